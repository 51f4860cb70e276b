//! Measures the many-core pieces (a benchmark, not a test):
//!
//! - `echo [--threads N] [--clients C] [--secs S] [--size B]`: echo throughput of a server on N
//!   proactor threads, with messages/s and the server's CPU time per message (the threads' own
//!   CPU clocks), so runs are comparable even when the load generator shares the cores.
//! - `distribution [--runs R] [--secs S] [--heavy H] [--light L]`: uneven load (H connections
//!   streaming 64 KiB messages, L sending a 64-byte ping every 5 ms) on 2 threads, once per
//!   distribution (one load-aware acceptor, `SO_REUSEPORT`), in the same connection order;
//!   reports how evenly the threads' CPU time is spread and the light clients' latency.
//!
//! `cargo run --release -p proactor --example threads_bench -- echo --threads 2`

use proactor::threads::{Conn, Distribution, MultiProactor, Threads};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number, got {v:?}")))
            .unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("echo") => {
            let threads = opt("--threads", 0);
            let list: Vec<usize> = if threads == 0 { vec![1, 2] } else { vec![threads as usize] };
            for n in list {
                echo_throughput(
                    n,
                    opt("--clients", 64) as usize,
                    Duration::from_secs(opt("--secs", 5)),
                    opt("--size", 64) as usize,
                );
            }
        }
        Some("distribution") => distribution(
            opt("--runs", 5) as usize,
            Duration::from_secs(opt("--secs", 3)),
            opt("--heavy", 4) as usize,
            opt("--light", 12) as usize,
        ),
        _ => {
            eprintln!("usage: threads_bench echo|distribution [options] (see the file's docs)");
            std::process::exit(2);
        }
    }
}

/// Which thread serves the connection from each client port (for the distribution report).
static PLACED: std::sync::Mutex<Vec<(u16, usize)>> = std::sync::Mutex::new(Vec::new());

async fn echo(stream: std::net::TcpStream, conn: Conn) {
    PLACED.lock().unwrap().push((conn.peer().port(), conn.worker()));
    let Ok(s) = proactor::net::TcpStream::from_std(stream) else { return };
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        let (res, b) = s.read(buf).await;
        buf = b;
        if !matches!(res, Ok(n) if n > 0) {
            break;
        }
        let (res, b) = s.write_all(buf).await;
        buf = b;
        if res.is_err() {
            break;
        }
        buf.clear();
    }
    drop(conn);
}

fn server_cpu(pool: &MultiProactor) -> Vec<Duration> {
    pool.workers().iter().map(|w| w.load().cpu_time()).collect()
}

/// Process CPU time (user + system) so far: server and load generator together.
fn process_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a local the call writes into.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One load-generator connection in a closed loop: send `size` bytes, read them back, repeat
/// until `end`. Returns the round trips done.
async fn ping_pong(addr: SocketAddr, size: usize, end: Instant) -> std::io::Result<u64> {
    let s = proactor::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut out = vec![0x5a; size];
    let mut back = Vec::with_capacity(size);
    let mut n = 0;
    while Instant::now() < end {
        let (res, o) = s.write_all(out).await;
        out = o;
        res?;
        back.clear();
        let (res, b) = s.read_exact(back).await;
        back = b;
        res?;
        n += 1;
    }
    Ok(n)
}

fn echo_throughput(threads: usize, clients: usize, secs: Duration, size: usize) {
    let pool = Threads::new().threads(threads).start().expect("start the server threads");
    let server =
        pool.serve("127.0.0.1:0".parse().unwrap(), Distribution::Acceptor, echo).expect("listen");
    let addr = server.local_addr();
    let client = proactor::Proactor::new().expect("client proactor");
    let cpu0 = server_cpu(&pool);
    let proc0 = process_cpu();
    let t0 = Instant::now();
    let end = t0 + secs;
    let total: u64 = client.block_on(async move {
        let tasks: Vec<_> =
            (0..clients).map(|_| proactor::spawn(ping_pong(addr, size, end))).collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("client task").expect("client connection");
        }
        total
    });
    let wall = t0.elapsed();
    let cpu: Duration = server_cpu(&pool).iter().zip(&cpu0).map(|(a, b)| *a - *b).sum();
    let proc_cpu = process_cpu() - proc0;
    println!(
        "echo --threads {threads}: {clients} clients x {size} B, {:.0} msg/s ({} round trips in \
         {:.2?}); server CPU {:.2?} = {:.2} µs/msg ({:.0}% of one core); whole process CPU {:.2?} \
         ({:.2} µs/msg)",
        total as f64 / wall.as_secs_f64(),
        total,
        wall,
        cpu,
        cpu.as_secs_f64() * 1e6 / total as f64,
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        proc_cpu,
        proc_cpu.as_secs_f64() * 1e6 / total as f64,
    );
    drop(server);
    pool.shutdown().expect("stop the server threads");
}

/// What one distribution run measured.
struct RunResult {
    cpu: Vec<Duration>,
    heavy_per_thread: Vec<usize>,
    per_thread: Vec<u64>,
    heavy_bytes: u64,
    light_p50: Duration,
    light_p99: Duration,
}

fn distribution(runs: usize, secs: Duration, heavy: usize, light: usize) {
    println!(
        "distribution: 2 threads, {heavy} heavy (64 KiB ping-pong) + {light} light (64 B every \
         5 ms) connections arriving 20 ms apart in a shuffled order, {secs:?} each, {runs} runs"
    );
    let mut summary = Vec::new();
    for dist in [Distribution::Acceptor, Distribution::ReusePort] {
        let mut ratios = Vec::new();
        let mut p99s = Vec::new();
        let mut bytes = 0u64;
        for run in 0..runs {
            let r = distribution_run(dist, run as u64, secs, heavy, light);
            let (lo, hi) = (
                r.cpu.iter().min().unwrap().as_secs_f64(),
                r.cpu.iter().max().unwrap().as_secs_f64(),
            );
            let share = hi / (lo + hi);
            println!(
                "  {dist:?} run {run}: connections per thread {:?} (heavy {:?}), CPU per thread {:.2?}, busiest \
                 thread's share {:.0}%, heavy throughput {:.0} MiB/s, light latency p50 {:.2?} \
                 p99 {:.2?}",
                r.per_thread,
                r.heavy_per_thread,
                r.cpu,
                100.0 * share,
                r.heavy_bytes as f64 / secs.as_secs_f64() / (1 << 20) as f64,
                r.light_p50,
                r.light_p99
            );
            ratios.push(share);
            p99s.push(r.light_p99);
            bytes += r.heavy_bytes;
        }
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        let worst = ratios.iter().cloned().fold(0.0, f64::max);
        p99s.sort();
        summary.push(format!(
            "{dist:?}: busiest thread's CPU share mean {:.0}% (worst {:.0}%; 50% is perfect), \
             heavy throughput {:.0} MiB/s, median of light p99 {:.2?}",
            100.0 * mean,
            100.0 * worst,
            bytes as f64 / (secs.as_secs_f64() * runs as f64) / (1 << 20) as f64,
            p99s[p99s.len() / 2]
        ));
    }
    for s in summary {
        println!("{s}");
    }
}

fn distribution_run(
    dist: Distribution,
    seed: u64,
    secs: Duration,
    heavy: usize,
    light: usize,
) -> RunResult {
    let pool = Threads::new().threads(2).start().expect("server threads");
    let server = pool.serve("127.0.0.1:0".parse().unwrap(), dist, echo).expect("listen");
    let addr = server.local_addr();
    let mut kinds: Vec<bool> = (0..heavy).map(|_| true).chain((0..light).map(|_| false)).collect();
    kinds.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let client = proactor::Proactor::new().expect("client proactor");
    let stagger = Duration::from_millis(20);
    let arrive = stagger * kinds.len() as u32;
    let start = Instant::now();
    let measure_from = start + arrive;
    let end = measure_from + secs;
    let lat = Rc::new(RefCell::new(Vec::new()));
    let heavy_ports = Rc::new(RefCell::new(Vec::new()));
    let hp = heavy_ports.clone();
    PLACED.lock().unwrap().clear();
    let cpu_at_start = Rc::new(RefCell::new(Vec::new()));
    let workers = pool.workers();
    let (l2, c2) = (lat.clone(), cpu_at_start.clone());
    let heavy_bytes = client.block_on(async move {
        let mut tasks = Vec::new();
        for (i, &is_heavy) in kinds.iter().enumerate() {
            let _ = proactor::time::sleep(stagger).await;
            let _ = i;
            let lat = l2.clone();
            let hp = hp.clone();
            tasks.push(proactor::spawn(async move {
                let s = proactor::net::TcpStream::connect(addr).await.expect("connect");
                if is_heavy {
                    hp.borrow_mut().push(s.local_addr().expect("local address").port());
                }
                s.set_nodelay(true).expect("nodelay");
                let size = if is_heavy { 64 << 10 } else { 64 };
                let mut out = vec![1u8; size];
                let mut back = Vec::with_capacity(size);
                let mut bytes = 0u64;
                while Instant::now() < end {
                    if !is_heavy {
                        let _ = proactor::time::sleep(Duration::from_millis(5)).await;
                    }
                    let t0 = Instant::now();
                    let (res, o) = s.write_all(out).await;
                    out = o;
                    res.expect("write");
                    back.clear();
                    let (res, b) = s.read_exact(back).await;
                    back = b;
                    res.expect("read");
                    if t0 >= measure_from {
                        if is_heavy {
                            bytes += size as u64;
                        } else {
                            lat.borrow_mut().push(t0.elapsed());
                        }
                    }
                }
                bytes
            }));
        }
        let now = Instant::now();
        if measure_from > now {
            let _ = proactor::time::sleep(measure_from - now).await;
        }
        *c2.borrow_mut() = workers.iter().map(|w| w.load().cpu_time()).collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("client task");
        }
        total
    });
    let cpu_end = server_cpu(&pool);
    let cpu: Vec<Duration> =
        cpu_end.iter().zip(cpu_at_start.borrow().iter()).map(|(a, b)| *a - *b).collect();
    let per_thread = pool.workers().iter().map(|w| w.load().assigned()).collect();
    let mut lat = lat.borrow().clone();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    let mut heavy_per_thread = vec![0; pool.len()];
    for (port, worker) in PLACED.lock().unwrap().iter() {
        if heavy_ports.borrow().contains(port) {
            heavy_per_thread[*worker] += 1;
        }
    }
    let r = RunResult {
        cpu,
        heavy_per_thread,
        per_thread,
        heavy_bytes,
        light_p50: pct(0.5),
        light_p99: pct(0.99),
    };
    drop(server);
    pool.shutdown().expect("stop");
    r
}
