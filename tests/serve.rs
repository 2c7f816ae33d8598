//! Integration tests of `ringhook serve`.
