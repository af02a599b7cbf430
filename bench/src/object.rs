//! `trove bench object`: GET latency and throughput of small and large
//! objects, trove next to nginx serving the same files, with the disk and
//! loopback TCP ceilings measured in the same run.
//!
//! Both servers get one core (trove: one shard; nginx: one worker) and the
//! load generator another, so neither competes with the generator.

use crate::baseline::{disk, nginx::Nginx, tcp};
use crate::load::{LoadResult, LoadSpec};
use crate::node::{bytes, work_subdir, BenchNode};
use crate::report::{self, Latency, Spread};
use crate::{loadgen, openloop};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ObjectBench {
    pub trove: PathBuf,
    pub url: Option<String>,
    pub duration: Duration,
    pub small_bytes: usize,
    pub large_bytes: usize,
    pub connections: usize,
    /// Open-loop rate of the small-object phase; None: half nginx's maximum.
    pub rate: Option<f64>,
    pub work_dir: PathBuf,
    pub out: PathBuf,
    pub server_cpu: usize,
    pub loadgen_cpu: usize,
    /// Rounds of each phase, alternating trove and nginx.
    pub rounds: usize,
}

/// The small-object p99.9 trove aims for under the open-loop load.
const SMALL_P99_9_TARGET_US: u64 = 2000;

/// Timed GETs of a large object from the page cache, per round.
const WARM_GETS: usize = 5;

/// Large-GET rates by round, bytes per second.
#[derive(Default)]
struct Large {
    trove_cold: Vec<f64>,
    trove_warm: Vec<f64>,
    nginx_cold: Vec<f64>,
    nginx_warm: Vec<f64>,
}

fn gbps(b: f64) -> String {
    format!("{:.2} GB/s", b / 1e9)
}

pub fn run(cfg: ObjectBench) -> anyhow::Result<PathBuf> {
    let work = work_subdir(&cfg.work_dir, "")?;
    let node_dir = work_subdir(&work, "node")?;
    let files = work_subdir(&work, "nginx-root")?;
    let small = bytes(1, cfg.small_bytes);
    let large = bytes(2, cfg.large_bytes);
    std::fs::write(files.join("small.bin"), &small)?;
    std::fs::write(files.join("large.bin"), &large)?;

    eprintln!("starting trove (1 shard on cpu {}) and nginx (1 worker on cpu {})", cfg.server_cpu, cfg.server_cpu);
    let node = match &cfg.url {
        Some(u) => BenchNode::existing(u)?,
        None => BenchNode::start(&cfg.trove, &node_dir, cfg.server_cpu)?,
    };
    node.put("/api/v1/object/bench/small.bin", &small)?;
    node.put("/api/v1/object/bench/large.bin", &large)?;
    drop(large);
    let nginx_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let nginx =
        Nginx::start(&files, &work_subdir(&work, "nginx")?, ([127, 0, 0, 1], nginx_port).into(), cfg.server_cpu)?;

    // Write back everything the set-up dirtied, so background writeback
    // does not land inside a measured phase (it showed as 20-40 ms stalls).
    sync();
    eprintln!("measuring the loopback TCP ceiling: write() and sendfile");
    let tcp = tcp::loopback_ceiling(Duration::from_secs(3), &files.join("large.bin"), cfg.server_cpu, cfg.loadgen_cpu)?;
    let tcp_bps = tcp.best();
    eprintln!("  write() {}  sendfile {}", gbps(tcp.write_bps), gbps(tcp.sendfile_bps));
    sync();

    let load = |addr: SocketAddr, path: &str, connections: usize, rate: Option<f64>| -> anyhow::Result<LoadResult> {
        let spec =
            LoadSpec { addr, path: path.into(), connections, duration: cfg.duration, rate, cpu: cfg.loadgen_cpu };
        let r = match rate {
            Some(rate) => openloop::run(&spec, rate)?,
            None => loadgen::run(spec)?,
        };
        anyhow::ensure!(r.requests > 0, "no request to {addr}{path} succeeded ({} errors)", r.errors);
        Ok(r)
    };

    // This machine is shared and noisy: every phase alternates trove and
    // nginx over `rounds` rounds, and the report takes the median round
    // (the best one for maximum rate). Every round is kept in the JSON.
    let rounds = cfg.rounds.max(1);
    let trove_small = "/api/v1/object/bench/small.bin";
    eprintln!(
        "small objects ({} B): closed-loop maximum, {} connections, {rounds} rounds",
        cfg.small_bytes, cfg.connections
    );
    let (mut t_maxes, mut n_maxes) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        t_maxes.push(load(node.addr, trove_small, cfg.connections, None)?);
        n_maxes.push(load(nginx.addr, "/small.bin", cfg.connections, None)?);
    }
    let t_max = pick(t_maxes.clone(), |r| r.requests_per_sec(), Pick::Max);
    let n_max = pick(n_maxes.clone(), |r| r.requests_per_sec(), Pick::Max);
    eprintln!("  trove {:.0} req/s  nginx {:.0} req/s", t_max.requests_per_sec(), n_max.requests_per_sec());
    let rate = cfg.rate.unwrap_or((n_max.requests_per_sec() * 0.5).max(100.0));
    eprintln!("small objects: open loop at {rate:.0} req/s, {rounds} rounds");
    let (mut t_opens, mut n_opens) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        t_opens.push(load(node.addr, trove_small, cfg.connections, Some(rate))?);
        n_opens.push(load(nginx.addr, "/small.bin", cfg.connections, Some(rate))?);
    }
    let p99 = |r: &LoadResult| r.latency_us.value_at_quantile(0.99) as f64;
    let p999 = |r: &LoadResult| r.latency_us.value_at_quantile(0.999) as f64;
    let per_round = |rs: &[LoadResult], f: &dyn Fn(&LoadResult) -> f64| rs.iter().map(f).collect::<Vec<f64>>();
    let (t_p99s, n_p99s) = (per_round(&t_opens, &p99), per_round(&n_opens, &p99));
    let (t_p999s, n_p999s) = (per_round(&t_opens, &p999), per_round(&n_opens, &p999));
    // What the run can resolve: the generator's own lateness and load, and
    // the latency from each request's actual send (the server's share).
    let lag999 = |r: &LoadResult| r.send_lag_us.value_at_quantile(0.999) as f64;
    let service999 = |r: &LoadResult| r.service_us.value_at_quantile(0.999) as f64;
    let busy = |r: &LoadResult| r.generator_busy();
    let (t_lag999s, n_lag999s) = (per_round(&t_opens, &lag999), per_round(&n_opens, &lag999));
    let (t_service999s, n_service999s) = (per_round(&t_opens, &service999), per_round(&n_opens, &service999));
    let (t_busys, n_busys) = (per_round(&t_opens, &busy), per_round(&n_opens, &busy));
    let t_open = pick(t_opens.clone(), p99, Pick::Median);
    let n_open = pick(n_opens.clone(), p99, Pick::Median);

    eprintln!(
        "large objects ({} MiB): one connection; per round one GET after the page cache is dropped and {WARM_GETS} from it, each timed alone, {rounds} rounds",
        cfg.large_bytes >> 20
    );
    let trove_large = "/api/v1/object/bench/large.bin";
    // Each GET's rate from its own send to its last byte; a round's figure
    // is the median of its GETs.
    let timed = |addr: SocketAddr, path: &str, n: usize| -> anyhow::Result<f64> {
        let gets = loadgen::timed_gets(addr, path, n, cfg.loadgen_cpu)?;
        let mut bps: Vec<f64> = gets.iter().map(|(b, t)| *b as f64 / t.as_secs_f64()).collect();
        anyhow::ensure!(
            gets.iter().all(|(b, _)| *b as usize == cfg.large_bytes),
            "a large GET of {addr}{path} came back short"
        );
        bps.sort_by(f64::total_cmp);
        Ok(bps[bps.len() / 2])
    };
    // One GET right after the page cache is dropped (dirty pages cannot be
    // dropped: write back first); None where that is not allowed.
    let cold = |addr: SocketAddr, path: &str| -> anyhow::Result<Option<f64>> {
        sync();
        if std::fs::write("/proc/sys/vm/drop_caches", "3").is_err() {
            return Ok(None);
        }
        timed(addr, path, 1).map(Some)
    };
    let mut large = Large::default();
    for _ in 0..rounds {
        large.trove_cold.extend(cold(node.addr, trove_large)?);
        large.trove_warm.push(timed(node.addr, trove_large, WARM_GETS)?);
        large.nginx_cold.extend(cold(nginx.addr, "/large.bin")?);
        large.nginx_warm.push(timed(nginx.addr, "/large.bin", WARM_GETS)?);
    }
    drop(nginx);
    drop(node);
    // What O_DIRECT gives on the file trove's GETs read (nginx's copy for --url).
    eprintln!("measuring the disk ceiling: fio O_DIRECT on the object's file");
    sync();
    let fio_file = largest_file(&node_dir).unwrap_or_else(|| files.join("large.bin"));
    let disk_patterns = disk::file_ceiling(&fio_file)?;
    let disk_bps = disk_patterns.iter().map(|(_, b)| *b).fold(0.0, f64::max);
    eprintln!("  disk {}", gbps(disk_bps));

    let ceiling = disk_bps.min(tcp_bps);
    let json = serde_json::json!({
        "bench": "object",
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), "kernel": kernel() },
        "setup": { "server_cpu": cfg.server_cpu, "loadgen_cpu": cfg.loadgen_cpu, "connections": cfg.connections,
                   "duration_s": cfg.duration.as_secs_f64(), "small_bytes": cfg.small_bytes, "large_bytes": cfg.large_bytes },
        "ceilings": {
            "disk_odirect_read_bps": disk_bps,
            "disk_patterns_bps": disk_patterns.iter().map(|(p, b)| (p.clone(), serde_json::json!(b))).collect::<serde_json::Map<_, _>>(),
            "loopback_tcp_bps": tcp_bps,
            "loopback_tcp_write_bps": tcp.write_bps,
            "loopback_tcp_sendfile_bps": tcp.sendfile_bps,
        },
        "rounds": {
            "small_max_rps": { "trove": t_maxes.iter().map(|r| r.requests_per_sec()).collect::<Vec<_>>(), "nginx": n_maxes.iter().map(|r| r.requests_per_sec()).collect::<Vec<_>>() },
            "small_p99_us": { "trove": t_p99s, "nginx": n_p99s },
            "small_p99_9_us": { "trove": t_p999s, "nginx": n_p999s },
            "small_generator_lag_p99_9_us": { "trove": t_lag999s, "nginx": n_lag999s },
            "small_service_p99_9_us": { "trove": t_service999s, "nginx": n_service999s },
            "small_generator_busy": { "trove": t_busys, "nginx": n_busys },
            "large_bps": { "trove_cold": large.trove_cold, "trove_warm": large.trove_warm, "nginx_cold": large.nginx_cold, "nginx_warm": large.nginx_warm },
        },
        "small": {
            "max_rps": { "trove": t_max.requests_per_sec(), "nginx": n_max.requests_per_sec() },
            "open_loop_rate_rps": rate,
            "latency": { "trove": Latency::of(&t_open.latency_us), "nginx": Latency::of(&n_open.latency_us) },
            "generator_send_lag": { "trove": Latency::of(&t_open.send_lag_us), "nginx": Latency::of(&n_open.send_lag_us) },
            "p99_9_us": { "trove": Spread::of(&t_p999s), "nginx": Spread::of(&n_p999s), "target": SMALL_P99_9_TARGET_US },
            "generator_lag_p99_9_us": { "trove": Spread::of(&t_lag999s), "nginx": Spread::of(&n_lag999s) },
            "service_p99_9_us": { "trove": Spread::of(&t_service999s), "nginx": Spread::of(&n_service999s) },
            "generator_busy": { "trove": Spread::of(&t_busys), "nginx": Spread::of(&n_busys) },
            "errors": { "trove": t_opens.iter().chain(&t_maxes).map(|r| r.errors).sum::<u64>(), "nginx": n_opens.iter().chain(&n_maxes).map(|r| r.errors).sum::<u64>() },
        },
        "large": {
            "trove_cold_bps": Spread::of(&large.trove_cold),
            "trove_warm_bps": Spread::of(&large.trove_warm),
            "nginx_cold_bps": Spread::of(&large.nginx_cold),
            "nginx_warm_bps": Spread::of(&large.nginx_warm),
        },
        "ratios": {
            "large_trove_over_nginx_cold": Spread::ratio(&large.trove_cold, &large.nginx_cold),
            "large_trove_over_nginx_warm": Spread::ratio(&large.trove_warm, &large.nginx_warm),
            "large_cold_trove_over_ceiling": Spread::of(&large.trove_cold.iter().map(|t| t / ceiling).collect::<Vec<_>>()),
            "small_p99_trove_over_nginx": Spread::ratio(&t_p99s, &n_p99s),
            "small_p99_9_trove_over_nginx": Spread::ratio(&t_p999s, &n_p999s),
            "small_service_p99_9_trove_over_nginx": Spread::ratio(&t_service999s, &n_service999s),
            "small_max_rps_trove_over_nginx": t_max.requests_per_sec() / n_max.requests_per_sec(),
        },
    });
    let md = markdown(&json);
    let svg = report::svg(
        &format!("{} B GET latency, open loop at {rate:.0} req/s (CO-corrected)", cfg.small_bytes),
        &[("trove", report::curve(&t_open.latency_us)), ("nginx sendfile", report::curve(&n_open.latency_us))],
    );
    let dir = cfg.out.join(format!("{}-object", timestamp()));
    report::write_all(&dir, &json, &md, &svg)?;
    println!("{md}");
    println!("results: {}", dir.display());
    Ok(dir)
}

fn markdown(j: &serde_json::Value) -> String {
    let us = |v: &serde_json::Value| {
        v.as_u64().map_or("-".into(), |u| {
            if u >= 10_000 {
                format!("{:.1} ms", u as f64 / 1000.0)
            } else {
                format!("{u} us")
            }
        })
    };
    let f = |v: &serde_json::Value| v.as_f64().map_or("-".into(), |x| format!("{x:.2}"));
    let g = |v: &serde_json::Value| v.as_f64().map_or("not measured".into(), gbps);
    let mut s = String::new();
    s.push_str(&format!(
        "### Ceilings\n\n| disk: fio O_DIRECT on the object's file, best of {} | loopback TCP, best of write() {} and sendfile {} |\n|---|---|\n| {} | {} |\n\n",
        j["ceilings"]["disk_patterns_bps"].as_object().map(|m| m.iter().map(|(k, v)| format!("{k} {}", g(v))).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
        g(&j["ceilings"]["loopback_tcp_write_bps"]), g(&j["ceilings"]["loopback_tcp_sendfile_bps"]),
        g(&j["ceilings"]["disk_odirect_read_bps"]),
        g(&j["ceilings"]["loopback_tcp_bps"])
    ));
    s.push_str(&format!(
        "### Small objects ({} B), open loop at {:.0} req/s, {} connections, CO-corrected (median round by p99)\n\n| server | p50 | p90 | p99 | p99.9 | p99.99 | max | max req/s (closed loop) |\n|---|---|---|---|---|---|---|---|\n",
        j["setup"]["small_bytes"], j["small"]["open_loop_rate_rps"].as_f64().unwrap_or(0.0), j["setup"]["connections"]
    ));
    for name in ["trove", "nginx"] {
        let l = &j["small"]["latency"][name];
        s.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {:.0} |\n",
            us(&l["p50_us"]),
            us(&l["p90_us"]),
            us(&l["p99_us"]),
            us(&l["p99_9_us"]),
            us(&l["p99_99_us"]),
            us(&l["max_us"]),
            j["small"]["max_rps"][name].as_f64().unwrap_or(0.0)
        ));
    }
    let sp = |v: &serde_json::Value| Spread::show(v, |x| format!("{:.2}", x / 1e9));
    let l = &j["large"];
    s.push_str(&format!(
        "\n### Large objects ({} MiB), one connection, each GET timed alone, GB/s: median round (min-max)\n\n| | trove | nginx sendfile |\n|---|---|---|\n| page cache dropped first | {} | {} |\n| page-cached | {} | {} |\n\n",
        j["setup"]["large_bytes"].as_u64().unwrap_or(0) >> 20, sp(&l["trove_cold_bps"]), sp(&l["nginx_cold_bps"]), sp(&l["trove_warm_bps"]), sp(&l["nginx_warm_bps"])
    ));
    let r = &j["ratios"];
    let x = |v: &serde_json::Value| Spread::show(v, |x| format!("{x:.2}"));
    let ms = |v: &serde_json::Value| Spread::show(v, |u| format!("{u:.0} us"));
    s.push_str(&format!(
        "### Ratios, trove / baseline: median round (min-max)\n\n| large, cold: / nginx cold | large, warm: / nginx warm | large, cold: / min(disk, TCP) | small p99: / nginx | small p99.9: / nginx |\n|---|---|---|---|---|\n| {} | {} | {} | {} | {} |\n\nSmall-object p99.9, median round (min-max): trove {}, nginx {}; target {} us. Closed-loop maximum rate, trove / nginx (best rounds): {}.\n",
        x(&r["large_trove_over_nginx_cold"]), x(&r["large_trove_over_nginx_warm"]), x(&r["large_cold_trove_over_ceiling"]),
        x(&r["small_p99_trove_over_nginx"]), x(&r["small_p99_9_trove_over_nginx"]),
        ms(&j["small"]["p99_9_us"]["trove"]), ms(&j["small"]["p99_9_us"]["nginx"]),
        SMALL_P99_9_TARGET_US, f(&r["small_max_rps_trove_over_nginx"])
    ));
    let small = &j["small"];
    let share = |v: &serde_json::Value| Spread::show(v, |x| format!("{:.0}%", x * 100.0));
    s.push_str(&format!(
        "\nWhat this run can resolve, median round (min-max), trove's rounds / nginx's rounds:\n\n\
         - the generator's own lateness at p99.9 (from due time to send): {} / {}; it kept {} / {} of its CPU busy;\n\
         - p99.9 from each request's actual send (the server's share, not CO-corrected): {} / {}, ratio {}.\n",
        ms(&small["generator_lag_p99_9_us"]["trove"]),
        ms(&small["generator_lag_p99_9_us"]["nginx"]),
        share(&small["generator_busy"]["trove"]),
        share(&small["generator_busy"]["nginx"]),
        ms(&small["service_p99_9_us"]["trove"]),
        ms(&small["service_p99_9_us"]["nginx"]),
        x(&r["small_service_p99_9_trove_over_nginx"])
    ));
    if small["generator_lag_p99_9_us"]["trove"]["median"].as_f64().is_some_and(|l| l >= SMALL_P99_9_TARGET_US as f64) {
        s.push_str(&format!(
            "\nThe generator alone was late by more than the {SMALL_P99_9_TARGET_US} us target at p99.9, so this run cannot show the target met or missed by the server.\n"
        ));
    }
    s
}

/// The largest sealed object file under a node's data dir.
fn largest_file(data_dir: &std::path::Path) -> Option<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    for shard in std::fs::read_dir(data_dir.join("shards")).ok()?.flatten() {
        for sub in std::fs::read_dir(shard.path().join("objects")).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(sub.path()).into_iter().flatten().flatten() {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                if best.as_ref().is_none_or(|(b, _)| len > *b) {
                    best = Some((len, f.path()));
                }
            }
        }
    }
    best.map(|(_, p)| p)
}

enum Pick {
    Max,
    Median,
}

/// The round with the largest, or the median, `key`.
fn pick<T>(mut rounds: Vec<T>, key: impl Fn(&T) -> f64, how: Pick) -> T {
    rounds.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let i = match how {
        Pick::Max => rounds.len() - 1,
        Pick::Median => rounds.len() / 2,
    };
    rounds.swap_remove(i)
}

fn sync() {
    let _ = std::process::Command::new("sync").status();
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// UTC time as `YYYYMMDDTHHMMSSZ`, naming a results directory.
pub fn timestamp() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y%m%dT%H%M%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "run".into())
}
