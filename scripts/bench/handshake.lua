-- wrk script: the validation handshake, as the platform sends it on subscription creation.
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/webhook"
wrk.body = ""
wrk.headers["Validation-Token"] = "bench-validation-token"
wrk.headers["Content-Type"] = "application/json"
