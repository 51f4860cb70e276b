//! `proactor bench` end to end with a tiny matrix (seconds, not minutes): every server runs and
//! reports every figure with no byte mismatched, the JSON and the chart are written, and a server
//! that mangles bytes makes the bench fail loudly.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, ExitStatus};

const SERVERS: [&str; 5] =
    ["proactor-uring", "proactor-uring-async", "proactor-epoll", "threads", "tokio-ct"];

const RUN_FIGURES: [&str; 20] = [
    "secs",
    "messages",
    "msgs_per_sec",
    "mb_per_sec",
    "p50_us",
    "p99_us",
    "p999_us",
    "max_us",
    "mean_us",
    "server_cpu_s",
    "server_cpu_s_per_million",
    "server_cpu_share",
    "server_peak_rss_kib",
    "server_threads",
    "client_cpu_s",
    "client_cpu_share",
    "conn_min_msgs",
    "conn_max_msgs",
    "first_echo_max_ms",
    "mismatches",
];

/// One bench at a time: each pins its server and load generator to the same two CPUs at the
/// same priority, so benches run side by side (the test harness runs tests in parallel) starve
/// each other — on a loaded machine one server completed no message in its window.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn bench(args: &[&str]) -> std::process::Output {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    Command::new(env!("CARGO_BIN_EXE_proactor"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run proactor bench")
}

/// What a `proactor bench` run printed, and the JSON report it wrote.
struct Bench {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    report: Value,
}

impl Bench {
    /// Runs `proactor bench <args> --json <dir>/bench.json` and reads the report.
    fn run(dir: &Path, args: &[&str]) -> Bench {
        let json = dir.join("bench.json");
        let args = [args, &["--json", json.to_str().unwrap()]].concat();
        let out = bench(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let report = std::fs::read(&json)
            .unwrap_or_else(|e| panic!("no JSON report ({e}): {}\n{stdout}\n{stderr}", out.status));
        let report = serde_json::from_slice(&report).unwrap();
        Bench { status: out.status, stdout, stderr, report }
    }

    /// [`Bench::run`] on one short point: `--secs <secs>`, 0.1 s of warm-up, 64-byte messages,
    /// no idle test, no same-core runs, and `args`.
    fn short(dir: &Path, secs: &str, args: &[&str]) -> Bench {
        let point =
            ["--secs", secs, "--warmup", "0.1", "--sizes", "64", "--idle", "0", "--no-same-core"];
        Bench::run(dir, &[args, &point].concat())
    }

    /// Panics, with what the bench printed, unless it exited successfully.
    fn assert_success(&self) {
        let (status, stdout, stderr) = (self.status, &self.stdout, &self.stderr);
        assert!(status.success(), "bench failed: {status}\n{stdout}\n{stderr}");
    }

    /// The report's runs.
    fn runs(&self) -> &[Value] {
        self.report["runs"].as_array().unwrap()
    }
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("figure {key} missing or not a number in {v}"))
}

#[test]
fn quick_bench_reports_every_server_and_figure() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("bench.svg");
    let b = Bench::run(
        dir.path(),
        &[
            "--quick",
            "--secs",
            "0.3",
            "--warmup",
            "0.1",
            "--conns",
            "1,10",
            "--sizes",
            "64",
            "--idle",
            "200",
            "--plot",
            svg.to_str().unwrap(),
        ],
    );
    b.assert_success();
    let (report, stdout, stderr) = (&b.report, &b.stdout, &b.stderr);
    assert_eq!(report["ok"], Value::Bool(true));
    assert_eq!(report["errors"].as_u64(), Some(0));
    assert_eq!(report["reference"], "tokio-ct");
    let servers: Vec<&str> =
        report["servers"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    // monoio is in the default list; a binary built without its feature says so and skips it.
    if cfg!(feature = "monoio-peer") {
        assert_eq!(servers, [&SERVERS[..], &["monoio"]].concat());
    } else {
        assert_eq!(servers, SERVERS);
        assert!(stderr.contains("skipping monoio") && stderr.contains("monoio-peer"), "{stderr}");
    }

    let runs = b.runs();
    let same_core = report["cpus"].as_u64().unwrap() >= 2;
    let mut points = vec![(1, false), (10, false)];
    if same_core {
        points.push((1, true));
    }
    assert_eq!(runs.len(), SERVERS.len() * points.len(), "one run per server and point");
    for server in SERVERS {
        for &(conns, same) in &points {
            let run = runs
                .iter()
                .find(|r| r["server"] == server && r["conns"] == conns && r["same_core"] == same)
                .unwrap_or_else(|| panic!("no run of {server} at {conns} conns, same core {same}"));
            for key in RUN_FIGURES {
                assert!(num(run, key) >= 0.0, "{server}: {key} negative");
            }
            assert_eq!(run["size"], 64);
            assert_eq!(num(run, "mismatches"), 0.0, "{server}: bytes mismatched");
            assert_eq!(num(run, "error_count"), 0.0, "{server}: {}", run["errors"]);
            assert!(num(run, "messages") > 0.0, "{server}: no message");
            assert!(num(run, "msgs_per_sec") > 0.0 && num(run, "mb_per_sec") > 0.0);
            let (p50, p99, p999) = (num(run, "p50_us"), num(run, "p99_us"), num(run, "p999_us"));
            assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999, "{server}: percentiles out of order");
            assert!(num(run, "server_peak_rss_kib") > 0.0, "{server}: no peak RSS");
            assert!(num(run, "client_cpu_s") > 0.0, "{server}: load generator CPU not measured");
            // --quick runs one round: no spread to judge, so not settled.
            assert_eq!(run["status"], "single", "{server}");
            assert!(run["msgs_spread"].is_null());
            assert_eq!(run["rounds"].as_array().unwrap().len(), 1);
        }
    }

    let idle = report["idle"].as_array().unwrap();
    assert_eq!(idle.len(), SERVERS.len());
    for i in idle {
        assert!(i["error"].is_null(), "idle test failed: {}", i["error"]);
        assert_eq!(i["conns"], 200);
        assert!(num(i, "loaded_rss_kib") > 0.0 && num(i, "baseline_rss_kib") > 0.0);
        num(i, "bytes_per_conn");
    }

    for server in SERVERS {
        assert!(stdout.contains(server), "table lacks {server}:\n{stdout}");
    }
    assert!(stdout.contains("(1.00x)"), "table lacks the ratios to tokio-ct:\n{stdout}");
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg"), "not an SVG");
    for server in SERVERS {
        assert!(chart.contains(server), "chart lacks {server}");
    }
}

#[test]
fn mangled_echo_fails_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bench::short(dir.path(), "0.3", &["--servers", "corrupt,tokio-ct", "--conns", "4"]);
    let stderr = &b.stderr;
    assert!(!b.status.success(), "a mangled echo must fail the bench");
    assert!(stderr.contains("FAILED") && stderr.contains("echoed byte"), "{stderr}");
    assert_eq!(b.report["ok"], Value::Bool(false));
    let runs = b.runs();
    let bad = runs.iter().find(|r| r["server"] == "corrupt").unwrap();
    assert!(num(bad, "mismatches") > 0.0);
    let good = runs.iter().find(|r| r["server"] == "tokio-ct").unwrap();
    assert_eq!(num(good, "error_count"), 0.0, "{}", good["errors"]);
}

/// A point whose rounds cannot agree (a bound of 0.001 %) gets its extra round, every round is in
/// the JSON with the ones used marked, and it is reported unreliable: no target on it is met.
#[test]
fn unsettled_point_is_rerun_and_marked_unreliable() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bench::short(
        dir.path(),
        "0.2",
        &[
            "--servers",
            "proactor-uring,tokio-ct",
            "--rounds",
            "2",
            "--extra-rounds",
            "1",
            "--max-spread",
            "0.001",
            "--conns",
            "100",
        ],
    );
    b.assert_success();
    let (report, stdout, runs) = (&b.report, &b.stdout, b.runs());
    assert_eq!(runs.len(), 2);
    for run in runs {
        let rounds = run["rounds"].as_array().unwrap();
        assert_eq!(rounds.len(), 3, "2 rounds and 1 extra: {run}");
        let used = rounds.iter().filter(|r| r["used"] == Value::Bool(true)).count();
        assert_eq!(used, 2, "the 2 rounds that agree best are used: {run}");
        assert!(num(run, "msgs_spread") > 0.0 && num(run, "cpu_spread") > 0.0);
        assert_eq!(run["status"], "unreliable", "{run}");
        assert_eq!(run["loadgen"], "epoll");
    }
    let targets = report["targets"].as_array().unwrap();
    assert!(!targets.is_empty());
    for t in targets {
        assert_eq!(t["verdict"], "unsettled", "{t}");
        assert_eq!(t["met"], Value::Bool(false));
    }
    assert!(stdout.contains("UNRELIABLE"), "{stdout}");
    assert!(stdout.contains("unsettled"), "{stdout}");
}

/// `--loadgen epoll,threads` runs every point under both load generators (the second one blocking
/// I/O on a few threads), checks every byte under both, and sets the ratios side by side.
#[test]
fn both_load_generators_run_and_their_ratios_are_compared() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bench::short(
        dir.path(),
        "0.5",
        &[
            "--servers",
            "proactor-uring,proactor-epoll,tokio-ct",
            "--loadgen",
            "epoll,threads",
            "--rounds",
            "1",
            "--conns",
            "10",
        ],
    );
    b.assert_success();
    let (report, stdout, runs) = (&b.report, &b.stdout, b.runs());
    assert_eq!(runs.len(), 6, "3 servers under 2 load generators");
    for lg in ["epoll", "threads"] {
        for run in runs.iter().filter(|r| r["loadgen"] == lg) {
            assert_eq!(num(run, "error_count"), 0.0, "{lg}: {}", run["errors"]);
            assert!(num(run, "messages") > 0.0, "{lg}: no message");
            assert!(num(run, "client_cpu_s") > 0.0, "{lg}: load generator CPU not measured");
            assert!(num(run, "server_cpu_s_per_million") > 0.0);
            assert!(num(run, "conn_min_msgs") > 0.0, "{lg}: a connection starved");
        }
    }
    let agreement = report["agreement"].as_array().unwrap();
    assert_eq!(agreement.len(), 4, "2 servers × msg/s and CPU/msg: {agreement:?}");
    for a in agreement {
        assert_eq!(a["ratios"].as_array().unwrap().len(), 2);
        assert!(num(a, "differ") >= 0.0);
    }
    assert!(stdout.contains("load generator: threads"), "{stdout}");
    assert!(stdout.contains("differ by"), "{stdout}");
}

/// `--rate` offers a fixed load: every server gets about that many messages per second (not
/// more — a 10-connection echo answers far faster), the header says so, and the rounds record
/// how long the measured processes waited for a CPU.
#[test]
fn a_fixed_rate_is_kept_and_said() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bench::short(
        dir.path(),
        "0.5",
        &[
            "--servers",
            "proactor-uring,tokio-ct",
            "--rate",
            "2000",
            "--rounds",
            "1",
            "--conns",
            "10",
        ],
    );
    b.assert_success();
    let (report, stdout, runs) = (&b.report, &b.stdout, b.runs());
    assert_eq!(num(&report["config"], "rate"), 2000.0);
    assert!(stdout.contains("offered load: 2000 msg/s"), "{stdout}");
    for run in runs {
        assert_eq!(num(run, "error_count"), 0.0, "{}", run["errors"]);
        // Well under what the servers answer unpaced (tens of thousands), at most the rate.
        let rate = num(run, "msgs_per_sec");
        assert!((100.0..=2200.0).contains(&rate), "{rate} msg/s at --rate 2000: {run}");
        for round in run["rounds"].as_array().unwrap() {
            assert!(num(round, "server_wait_share") >= 0.0, "{round}");
            assert!(num(round, "client_wait_share") >= 0.0, "{round}");
        }
    }
}

#[test]
fn bad_options_are_refused() {
    for args in [
        &["--conns", "0"][..],
        &["--servers", "nginx"],
        &["--secs", "-1"],
        &["--max-spread", "0"],
        &["--loadgen", "nope"],
        &["--loadgen", "threads", "--sizes", "100000"],
        &["--rate", "0"],
        &["--rate", "1000", "--loadgen", "epoll,threads"],
    ] {
        let out = bench(args);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(!out.stderr.is_empty(), "{args:?}: no error message");
    }
}
