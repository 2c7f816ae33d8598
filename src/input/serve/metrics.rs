//! What `serve` counts, and its Prometheus text exposition (format 0.0.4), written by hand.
//!
//! The format is a few lines per family (`# HELP`, `# TYPE`, samples), too small a job for a
//! crate under the size budget. Counting is plain integers on the loop's one thread: no atomics,
//! no allocation per request. Rendering happens only when `--metrics-path` is scraped, and writes
//! numbers with its own integer formatting (no float formatting code in the binary for this).
//! Family names are a contract (dashboards and `scripts/prometheus/alerts.yml` rely on them).

pub use crate::log::histogram::Histogram;
use crate::log::histogram::SYNC_BUCKETS;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `Content-Type` of a scrape.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// What the receiver counts. `serve` logs them at shutdown; `--metrics-path` exposes them.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Connections accepted.
    pub connections: u64,
    /// Handshakes answered.
    pub handshakes: u64,
    /// Events written to the log.
    pub logged: u64,
    /// Redeliveries acknowledged without writing.
    pub duplicates: u64,
    /// Requests answered 4xx.
    pub rejected: u64,
    /// Notifications refused before the log (token missing or wrong, too large, malformed).
    pub notifications_rejected: u64,
    /// Notifications answered 503 because the log was unwritable.
    pub unavailable: u64,
    /// Requests that did not complete in time.
    pub timeouts: u64,
    /// Connections closed to make room.
    pub evicted: u64,
    /// Group commits (one write and one sync each).
    pub batches: u64,
    /// Answers by status code.
    pub responses: Responses,
    /// When the last notification was written.
    pub last_notification: Option<SystemTime>,
}

/// Answers counted by status code: a handful of codes, so a short list searched in order.
#[derive(Debug, Default, Clone)]
pub struct Responses(Vec<(u16, u64)>);

impl Responses {
    /// Counts one answer with `code` (allocates only the first time a code is seen).
    pub fn count(&mut self, code: u16) {
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => {
                let at = self.0.partition_point(|(c, _)| *c < code);
                self.0.insert(at, (code, 1));
            }
        }
    }

    /// Answers given with `code` so far.
    pub fn get(&self, code: u16) -> u64 {
        self.0
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(0, |(_, n)| *n)
    }
}

/// What `serve --register` learnt from its reconcile runs.
#[derive(Debug, Default, Clone)]
pub struct RegisterStatus {
    /// Runs that exited 0.
    pub ok: u64,
    /// Runs that failed (or could not start).
    pub failed: u64,
    /// Runs that failed since the last success (what `RinghookRegisterFailing` watches).
    pub failed_in_a_row: u64,
    /// When a run last succeeded.
    pub last_success: Option<SystemTime>,
    /// The subscription's expiry, as the last successful run reported it.
    pub expiry: Option<SystemTime>,
    /// Whether the platform called it `Active` (not `Blacklisted` or `Suspended`).
    pub active: Option<bool>,
}

/// The shipper figures a scrape shows, from `serve --ship`'s last status line (which
/// `serve::shipper` reads).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ShipFigures {
    /// Events delivered to the sink.
    pub delivered: u64,
    /// Events given up on and written to the dead-letter file.
    pub dead_lettered: u64,
    /// Events in the log not yet delivered.
    pub lag_events: u64,
    /// Age of the oldest event not yet delivered (0 when caught up).
    pub lag: Duration,
}

/// `--exec` outcomes: exited 0, failed, killed after the timeout, skipped (queue full).
#[derive(Debug, Default, Clone, Copy)]
pub struct ExecOutcomes {
    /// Exited 0.
    pub ok: u64,
    /// Could not start, exited non-zero or died of a signal (not counting timeouts).
    pub failed: u64,
    /// Killed after `--exec-timeout` (or at shutdown).
    pub timeout: u64,
    /// Not run: the queue was full, or shutdown dropped it.
    pub skipped: u64,
}

/// The process, as `/proc/self` describes it (`None` where it cannot be read).
#[derive(Debug, Default, Clone, Copy)]
pub struct Process {
    /// Start time, seconds since the epoch, in milliseconds.
    pub start_time_millis: Option<u64>,
    /// Resident set size in bytes.
    pub resident_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
}

impl Process {
    /// Reads `/proc/self/{status,stat,fd}` and `/proc/stat` (small files, read with a bound).
    pub fn read() -> Process {
        let stat = read_small("/proc/self/stat");
        let boot = read_small("/proc/stat");
        Process {
            start_time_millis: start_time_millis(&stat, &boot),
            // The directory being read holds a descriptor of its own: not ours to report.
            ..Process::read_changing()
        }
    }
}

/// [`Process`] read at most once a second, and its start time once: reading `/proc` costs more
/// than rendering everything else (`/proc/stat` alone is kilobytes on a many-core machine), and
/// a flood of scrapes must not eat the loop's time for notifications (issue 21, item 13).
#[derive(Debug, Default)]
pub(crate) struct ProcessCache {
    read_at: Option<std::time::Instant>,
    last: Process,
}

impl ProcessCache {
    /// How long a reading is shown before `/proc` is read again.
    const FRESH: Duration = Duration::from_secs(1);

    /// The process's figures, read again when the last reading is older than a second.
    pub(crate) fn get(&mut self, now: std::time::Instant) -> Process {
        let fresh = self
            .read_at
            .is_some_and(|at| now.saturating_duration_since(at) < Self::FRESH);
        if !fresh {
            let start = self.last.start_time_millis;
            self.last = if start.is_some() {
                Process {
                    start_time_millis: start,
                    ..Process::read_changing()
                }
            } else {
                Process::read()
            };
            self.read_at = Some(now);
        }
        self.last
    }
}

impl Process {
    /// Resident memory and descriptors only (the start time does not change).
    fn read_changing() -> Process {
        Process {
            start_time_millis: None,
            resident_bytes: resident_bytes(&read_small("/proc/self/status")),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| (d.count() as u64).saturating_sub(1)),
        }
    }
}

fn read_small(path: &str) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(64 * 1024).read_to_string(&mut s);
    }
    s
}

/// `VmRSS:   1234 kB` in `/proc/self/status`, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line["VmRSS:".len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Field 22 of `/proc/self/stat` (clock ticks after boot) plus `btime` of `/proc/stat`.
fn start_time_millis(stat: &str, proc_stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let btime: u64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // USER_HZ is 100 on every Linux architecture (the kernel converts to it for userspace).
    Some(btime * 1000 + ticks * 10)
}

/// Everything one scrape shows.
#[derive(Debug)]
pub struct Scrape<'a> {
    /// The receiver's counters.
    pub counters: &'a Counters,
    /// Connections open now (the scrape's own included).
    pub connections_open: usize,
    /// False while the event log cannot be written.
    pub log_writable: bool,
    /// `fdatasync` durations (empty with the stdout sink).
    pub log_sync: &'a Histogram,
    /// How long the disk has been at the log's job in flight (a batch's write and sync, a
    /// probe, a reopen), if one is.
    pub log_sync_in_flight: Option<Duration>,
    /// With `--exec`.
    pub exec: Option<ExecOutcomes>,
    /// With `--register`.
    pub register: Option<&'a RegisterStatus>,
    /// With `--ship`.
    pub ship: Option<&'a ShipFigures>,
    /// `/proc/self`.
    pub process: Process,
}

/// Writes `s` in the text exposition format into `out`.
pub fn render(s: &Scrape, out: &mut Vec<u8>) {
    let c = s.counters;
    let mut w = Writer(out);

    w.head(
        "ringhook_notifications_total",
        "counter",
        "Notifications by outcome.",
    );
    for (result, n) in [
        ("logged", c.logged),
        ("duplicate", c.duplicates),
        ("rejected", c.notifications_rejected),
        ("unwritable", c.unavailable),
    ] {
        w.labelled("ringhook_notifications_total", "result", result, n);
    }
    w.head(
        "ringhook_handshakes_total",
        "counter",
        "Handshakes answered.",
    );
    w.int("ringhook_handshakes_total", c.handshakes);
    w.head("ringhook_responses_total", "counter", "Answers by code.");
    for &(code, n) in &c.responses.0 {
        w.0.extend_from_slice(b"ringhook_responses_total{code=\"");
        uint(w.0, u64::from(code));
        w.0.extend_from_slice(b"\"} ");
        uint(w.0, n);
        w.0.push(b'\n');
    }
    w.head("ringhook_connections_open", "gauge", "Connections open.");
    w.int("ringhook_connections_open", s.connections_open as u64);
    w.head(
        "ringhook_connections_evicted_total",
        "counter",
        "Connections closed to make room.",
    );
    w.int("ringhook_connections_evicted_total", c.evicted);
    w.head(
        "ringhook_log_syncs_total",
        "counter",
        "fdatasync calls on the event log.",
    );
    w.int("ringhook_log_syncs_total", s.log_sync.count());
    w.histogram("ringhook_log_sync_seconds", "fdatasync time.", s.log_sync);
    w.head(
        "ringhook_log_sync_in_flight",
        "gauge",
        "1 while a write and fdatasync of the event log runs (its batch waits for it).",
    );
    w.int(
        "ringhook_log_sync_in_flight",
        u64::from(s.log_sync_in_flight.is_some()),
    );
    w.head(
        "ringhook_log_sync_age_seconds",
        "gauge",
        "How long the fdatasync in flight has run (0 when none runs).",
    );
    w.secs(
        "ringhook_log_sync_age_seconds",
        s.log_sync_in_flight.unwrap_or_default(),
    );
    w.head(
        "ringhook_log_writable",
        "gauge",
        "1 while the event log takes writes.",
    );
    w.int("ringhook_log_writable", u64::from(s.log_writable));
    w.head(
        "ringhook_last_notification_timestamp_seconds",
        "gauge",
        "When the last notification was logged.",
    );
    w.time(
        "ringhook_last_notification_timestamp_seconds",
        c.last_notification,
    );

    if let Some(x) = s.exec {
        w.head(
            "ringhook_exec_total",
            "counter",
            "--exec commands by outcome.",
        );
        for (outcome, n) in [
            ("ok", x.ok),
            ("failed", x.failed),
            ("timeout", x.timeout),
            ("skipped", x.skipped),
        ] {
            w.labelled("ringhook_exec_total", "outcome", outcome, n);
        }
    }
    if let Some(r) = s.register {
        w.head("ringhook_register_runs_total", "counter", "Reconcile runs.");
        w.labelled("ringhook_register_runs_total", "result", "ok", r.ok);
        w.labelled("ringhook_register_runs_total", "result", "failed", r.failed);
        w.head(
            "ringhook_register_consecutive_failures",
            "gauge",
            "Reconcile runs failed in a row.",
        );
        w.int("ringhook_register_consecutive_failures", r.failed_in_a_row);
        w.head(
            "ringhook_register_last_success_timestamp_seconds",
            "gauge",
            "When a reconcile run last succeeded.",
        );
        w.time(
            "ringhook_register_last_success_timestamp_seconds",
            r.last_success,
        );
        // Unknown until a run succeeds: no sample rather than a misleading 0.
        w.head(
            "ringhook_subscription_expiry_timestamp_seconds",
            "gauge",
            "When the subscription expires.",
        );
        if r.expiry.is_some() {
            w.time("ringhook_subscription_expiry_timestamp_seconds", r.expiry);
        }
        w.head(
            "ringhook_subscription_active",
            "gauge",
            "1 while the subscription is Active.",
        );
        if let Some(a) = r.active {
            w.int("ringhook_subscription_active", u64::from(a));
        }
    }
    if let Some(sh) = s.ship {
        w.head(
            "ringhook_ship_delivered_total",
            "counter",
            "Events shipped.",
        );
        w.int("ringhook_ship_delivered_total", sh.delivered);
        w.head(
            "ringhook_ship_dead_lettered_total",
            "counter",
            "Events dead-lettered by the shipper.",
        );
        w.int("ringhook_ship_dead_lettered_total", sh.dead_lettered);
        w.head(
            "ringhook_ship_lag_events",
            "gauge",
            "Events not yet shipped.",
        );
        w.int("ringhook_ship_lag_events", sh.lag_events);
        w.head(
            "ringhook_ship_lag_seconds",
            "gauge",
            "Age of the oldest undelivered event.",
        );
        w.secs("ringhook_ship_lag_seconds", sh.lag);
    }

    w.head("ringhook_build_info", "gauge", "Build version.");
    w.0.extend_from_slice(b"ringhook_build_info{version=\"");
    escape_label(env!("CARGO_PKG_VERSION"), w.0);
    w.0.extend_from_slice(b"\"} 1\n");
    let p = s.process;
    if let Some(ms) = p.start_time_millis {
        w.head(
            "process_start_time_seconds",
            "gauge",
            "Start time since the epoch.",
        );
        w.secs("process_start_time_seconds", Duration::from_millis(ms));
    }
    if let Some(b) = p.resident_bytes {
        w.head("process_resident_memory_bytes", "gauge", "Resident memory.");
        w.int("process_resident_memory_bytes", b);
    }
    if let Some(n) = p.open_fds {
        w.head("process_open_fds", "gauge", "Open descriptors.");
        w.int("process_open_fds", n);
    }
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        self.0.extend_from_slice(b"# HELP ");
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(b' ');
        escape_help(help, self.0);
        self.0.extend_from_slice(b"\n# TYPE ");
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(b' ');
        self.0.extend_from_slice(kind.as_bytes());
        self.0.push(b'\n');
    }

    fn int(&mut self, name: &str, v: u64) {
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(b' ');
        uint(self.0, v);
        self.0.push(b'\n');
    }

    /// `name d` with `d` in seconds.
    fn secs(&mut self, name: &str, d: Duration) {
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(b' ');
        seconds(self.0, d);
        self.0.push(b'\n');
    }

    /// A timestamp in seconds since the epoch, to the millisecond; 0 for `None`.
    fn time(&mut self, name: &str, t: Option<SystemTime>) {
        let ms = t.map_or(0, |t| {
            t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
        });
        self.secs(name, Duration::from_millis(ms));
    }

    fn labelled(&mut self, name: &str, label: &str, value: &str, v: u64) {
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(b'{');
        self.0.extend_from_slice(label.as_bytes());
        self.0.extend_from_slice(b"=\"");
        escape_label(value, self.0);
        self.0.extend_from_slice(b"\"} ");
        uint(self.0, v);
        self.0.push(b'\n');
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.head(name, "histogram", help);
        let mut cumulative = 0;
        for (&(le, _), n) in SYNC_BUCKETS.iter().zip(h.buckets()) {
            cumulative += n;
            self.bucket(name, le, cumulative);
        }
        self.bucket(name, "+Inf", h.count());
        for (suffix, v) in [("_sum", None), ("_count", Some(h.count()))] {
            self.0.extend_from_slice(name.as_bytes());
            self.0.extend_from_slice(suffix.as_bytes());
            self.0.push(b' ');
            match v {
                Some(n) => uint(self.0, n),
                None => seconds(self.0, h.sum()),
            }
            self.0.push(b'\n');
        }
    }

    fn bucket(&mut self, name: &str, le: &str, n: u64) {
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b"_bucket{le=\"");
        self.0.extend_from_slice(le.as_bytes());
        self.0.extend_from_slice(b"\"} ");
        uint(self.0, n);
        self.0.push(b'\n');
    }
}

/// Decimal digits of `n`.
fn uint(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `d` in seconds, as few digits as exact: `12`, `0.0005`, `1700000000.123`.
fn seconds(out: &mut Vec<u8>, d: Duration) {
    uint(out, d.as_secs());
    let mut frac = d.subsec_nanos();
    if frac == 0 {
        return;
    }
    let mut width = 9;
    while frac % 10 == 0 {
        frac /= 10;
        width -= 1;
    }
    out.push(b'.');
    let start = out.len();
    uint(out, u64::from(frac));
    let pad = width - (out.len() - start);
    out.splice(start..start, std::iter::repeat_n(b'0', pad));
}

/// A label value: `\`, `"` and newline escaped, as the format requires.
fn escape_label(value: &str, out: &mut Vec<u8>) {
    for &b in value.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

/// Help text: `\` and newline escaped (quotes are allowed there).
fn escape_help(text: &str, out: &mut Vec<u8>) {
    for &b in text.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn numbers_are_written_exactly() {
        for (n, want) in [
            (0, "0"),
            (7, "7"),
            (10, "10"),
            (u64::MAX, "18446744073709551615"),
        ] {
            assert_eq!(text(|o| uint(o, n)), want);
        }
        for (d, want) in [
            (Duration::ZERO, "0"),
            (Duration::from_secs(12), "12"),
            (Duration::from_micros(500), "0.0005"),
            (Duration::from_nanos(1), "0.000000001"),
            (Duration::from_millis(1_700_000_000_123), "1700000000.123"),
            (Duration::new(3, 100_000_000), "3.1"),
            (Duration::new(1, 999_999_999), "1.999999999"),
        ] {
            assert_eq!(text(|o| seconds(o, d)), want, "{d:?}");
        }
    }

    #[test]
    fn labels_and_help_are_escaped() {
        assert_eq!(text(|o| escape_label("a\\b\"c\nd", o)), r#"a\\b\"c\nd"#);
        assert_eq!(text(|o| escape_help("say \"x\"\\\n", o)), r#"say "x"\\\n"#);
    }

    #[test]
    fn responses_stay_sorted_by_code() {
        let mut r = Responses::default();
        for code in [503, 200, 403, 200, 413, 200] {
            r.count(code);
        }
        assert_eq!(r.0, vec![(200, 3), (403, 1), (413, 1), (503, 1)]);
        assert_eq!(r.get(200), 3);
        assert_eq!(r.get(404), 0);
    }

    #[test]
    fn the_histogram_is_cumulative_with_exact_sum() {
        let mut h = Histogram::default();
        for us in [100, 500, 501, 30_000, 2_000_000] {
            h.observe(Duration::from_micros(us));
        }
        let out = text(|o| Writer(o).histogram("x", "h", &h));
        for want in [
            "x_bucket{le=\"0.0005\"} 2\n",
            "x_bucket{le=\"0.001\"} 3\n",
            "x_bucket{le=\"0.025\"} 3\n",
            "x_bucket{le=\"0.05\"} 4\n",
            "x_bucket{le=\"1\"} 4\n",
            "x_bucket{le=\"+Inf\"} 5\n",
            "x_sum 2.031101\n",
            "x_count 5\n",
        ] {
            assert!(out.contains(want), "{want:?} not in\n{out}");
        }
    }

    #[test]
    fn proc_files_are_read() {
        let status = "Name:\tringhook\nVmPeak:\t  9000 kB\nVmRSS:\t    1536 kB\nThreads:\t1\n";
        assert_eq!(resident_bytes(status), Some(1536 * 1024));
        assert_eq!(resident_bytes("Name: x\n"), None);
        // A command name with spaces and a parenthesis of its own.
        let stat = "4242 (ring hook) R 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 200 18446744073709551615";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        assert_eq!(
            start_time_millis(stat, boot),
            Some(1_700_000_000_000 + 123_450)
        );
        assert_eq!(start_time_millis(stat, "cpu 1\n"), None);
        let live = Process::read();
        assert!(live.resident_bytes.unwrap() > 0);
        assert!(live.open_fds.unwrap() >= 3);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let started = Duration::from_millis(live.start_time_millis.unwrap());
        assert!(
            started <= now + Duration::from_secs(1),
            "{started:?} {now:?}"
        );
    }

    #[test]
    fn optional_families_appear_only_when_configured() {
        let c = Counters::default();
        let h = Histogram::default();
        let base = Scrape {
            counters: &c,
            connections_open: 1,
            log_writable: true,
            log_sync: &h,
            log_sync_in_flight: None,
            exec: None,
            register: None,
            ship: None,
            process: Process::default(),
        };
        let plain = text(|o| render(&base, o));
        assert!(plain.contains("ringhook_notifications_total{result=\"logged\"} 0\n"));
        assert!(plain.contains("ringhook_log_writable 1\n"));
        assert!(plain.contains("ringhook_log_sync_in_flight 0\n"));
        assert!(plain.contains("ringhook_log_sync_age_seconds 0\n"));
        let stuck = Scrape {
            log_sync_in_flight: Some(Duration::from_millis(2500)),
            ..base
        };
        let stuck = text(|o| render(&stuck, o));
        assert!(stuck.contains("ringhook_log_sync_in_flight 1\n"));
        assert!(stuck.contains("ringhook_log_sync_age_seconds 2.5\n"));
        assert!(plain.contains("ringhook_last_notification_timestamp_seconds 0\n"));
        for absent in ["ringhook_exec_total", "ringhook_register", "ringhook_ship"] {
            assert!(!plain.contains(absent), "{absent}");
        }
        let r = RegisterStatus {
            ok: 2,
            active: Some(false),
            ..RegisterStatus::default()
        };
        let with = Scrape {
            exec: Some(ExecOutcomes {
                timeout: 3,
                ..ExecOutcomes::default()
            }),
            register: Some(&r),
            ship: Some(&ShipFigures::default()),
            ..base
        };
        let all = text(|o| render(&with, o));
        for want in [
            "ringhook_exec_total{outcome=\"timeout\"} 3\n",
            "ringhook_register_runs_total{result=\"ok\"} 2\n",
            "ringhook_subscription_active 0\n",
            "ringhook_ship_lag_seconds 0\n",
        ] {
            assert!(all.contains(want), "{want:?} not in\n{all}");
        }
        // Expiry unknown: the family is declared, with no sample.
        assert!(!all.contains("\nringhook_subscription_expiry_timestamp_seconds "));
    }
}
