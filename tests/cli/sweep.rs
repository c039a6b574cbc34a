//! `flowcast sweep` end to end: a local TPE + ASHA sweep on two worker processes (results,
//! plots, best experiment, shared data, `reproduce` of a trial), a worker killed mid-trial and
//! the trial re-queued and resumed, and a 4-trial sweep through a Slurm job array on a
//! single-node cluster the test starts itself (skipped with a message without Slurm).

use super::flowcast;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Tiny synthetic experiment: 2 levels, short windows, a small LSTM, a few batches an epoch.
fn base(epochs: usize, max_batches: usize) -> String {
    format!(
        r#"
name = "sw"
seed = 5
[data]
synthetic = {{ levels = 2, events = 5000, seed = 21 }}
[columns]
kind = "book"
window = 16
train_stride = 4
[label]
kind = "smoothed"
horizon = 5
[[model]]
name = "lstm"
hidden = 8
[training]
epochs = {epochs}
batch = 32
max_batches = {max_batches}
"#
    )
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {out}"))
}

fn journal_ops(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).expect("every journal line is whole JSON")).collect()
}

fn write_sweep(dir: &Path, exp: &str, sweep: &str) -> PathBuf {
    std::fs::write(dir.join("exp.toml"), exp).unwrap();
    let p = dir.join("sweep.toml");
    std::fs::write(&p, sweep).unwrap();
    p
}

/// Checks the results a finished sweep wrote, and returns the `--json` object's trials.
fn check_results(v: &serde_json::Value, trials: usize, params: &[&str]) -> Vec<serde_json::Value> {
    let ts = v["trials"].as_array().unwrap().clone();
    assert_eq!(ts.len(), trials, "{v}");
    let nums: Vec<u64> = ts.iter().map(|t| t["trial"].as_u64().unwrap()).collect();
    assert_eq!(nums, (0..trials as u64).collect::<Vec<_>>());
    for t in &ts {
        assert!(["complete", "pruned"].contains(&t["status"].as_str().unwrap()), "{t}");
        assert!(Path::new(t["run_dir"].as_str().unwrap()).join("metrics.json").is_file(), "{t}");
        for p in params {
            assert!(!t["params"][p].is_null(), "{p} in {t}");
        }
    }
    let best = &v["best"];
    assert_eq!(best["status"], "complete", "{v}");
    let bv = best["value"].as_f64().unwrap();
    for t in ts.iter().filter(|t| t["status"] == "complete") {
        assert!(t["value"].as_f64().unwrap() <= bv, "best is the largest macro-F1: {t} vs {best}");
    }
    let files = &v["files"];
    let csv = std::fs::read_to_string(files["csv"].as_str().unwrap()).unwrap();
    assert_eq!(csv.lines().count(), trials + 1, "{csv}");
    let head = csv.lines().next().unwrap();
    for col in ["trial", "val_macro_f1", "status", "epochs", "seconds", "run_dir"].iter().chain(params) {
        assert!(head.split(',').any(|h| h == *col), "{col} in {head}");
    }
    let md = std::fs::read_to_string(files["markdown"].as_str().unwrap()).unwrap();
    assert!(md.contains("| trial |") && md.lines().filter(|l| l.starts_with("| ")).count() == trials + 1, "{md}");
    let plots = files["plots"].as_array().unwrap();
    assert_eq!(plots.len(), params.len());
    for p in plots {
        let svg = std::fs::read_to_string(p.as_str().unwrap()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("<circle"), "{p}: an SVG with the trials' points");
    }
    // The best configuration is an experiment `flowcast` accepts.
    let best_toml = files["best_experiment"].as_str().unwrap();
    let text = std::fs::read_to_string(best_toml).unwrap();
    for p in params {
        let key = p.rsplit('.').next().unwrap();
        assert!(text.contains(key), "{key} in {text}");
    }
    ts
}

#[test]
fn local_tpe_sweep_with_asha_shares_data_and_reproduces() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_sweep(
        tmp.path(),
        &base(3, 3),
        &format!(
            r#"
name = "local"
base = "exp.toml"
out_dir = "{}"
strategy = "tpe"
trials = 5
seed = 4
workers = 2
[tpe]
startup_trials = 2
[asha]
min_epochs = 1
reduction = 2
[params."training.lr"]
dist = "log_uniform"
low = 0.0005
high = 0.05
[params."models.0.hidden"]
dist = "int"
low = 4
high = 16
step = 4
[params."training.optimizer"]
dist = "categorical"
values = ["adam", "adamw"]
"#,
            tmp.path().join("sweeps").display()
        ),
    );
    let t0 = Instant::now();
    let (code, out, err) = flowcast(&["sweep", spec.to_str().unwrap(), "--json"]);
    eprintln!("local sweep: {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(code, 0, "{out}\n{err}");
    let v = json(&out);
    let ts = check_results(&v, 5, &["training.lr", "models.0.hidden", "training.optimizer"]);
    assert_eq!(v["backend"]["exit_codes"], serde_json::json!([0, 0]), "{v}");
    for t in &ts {
        let lr = t["params"]["training.lr"].as_f64().unwrap();
        assert!((0.0005..=0.05).contains(&lr), "{t}");
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(Path::new(t["run_dir"].as_str().unwrap()).join("metrics.json")).unwrap())
                .unwrap();
        let hist = m["models"]["lstm"]["history"].as_array().unwrap();
        // Pruned trials stopped before the last epoch, complete ones ran all of them.
        match t["status"].as_str().unwrap() {
            "pruned" => assert!(hist.len() < 3, "{t}"),
            _ => assert_eq!(hist.len(), 3, "{t}"),
        }
        assert_eq!(t["epochs"].as_u64().unwrap() as usize, hist.len());
        // The trial's run used its parameters.
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(Path::new(t["run_dir"].as_str().unwrap()).join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["model"][0]["hidden"], t["params"]["models.0.hidden"]);
        assert_eq!(cfg["training"]["optimizer"], t["params"]["training.optimizer"]);
    }
    // Two workers, five trials, each created once.
    let dir = Path::new(v["dir"].as_str().unwrap());
    let ops = journal_ops(&dir.join("journal.jsonl"));
    assert_eq!(ops[0]["op"], "create_sweep");
    let mut created: Vec<u64> = ops.iter().filter(|o| o["op"] == "create_trial").map(|o| o["trial"].as_u64().unwrap()).collect();
    created.sort_unstable();
    assert_eq!(created, vec![0, 1, 2, 3, 4]);
    // One preprocessing for every trial: one cached event set.
    let cached: Vec<_> = std::fs::read_dir(dir.join("cache")).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().is_dir()).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");

    // The best trial is an ordinary run directory: `flowcast reproduce` gives the same numbers.
    let best_dir = v["best"]["run_dir"].as_str().unwrap();
    let (code, out, err) =
        flowcast(&["reproduce", "--run", best_dir, "--quiet", "--json", "--runs-dir", tmp.path().join("again").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(json(&out)["reproduction"]["identical"], true, "{out}");

    // Running the finished sweep again starts nothing new and reports the same best trial.
    let (code, out, err) = flowcast(&["sweep", spec.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["best"]["trial"], v["best"]["trial"]);
    assert_eq!(journal_ops(&dir.join("journal.jsonl")).iter().filter(|o| o["op"] == "create_trial").count(), 5);

    // Another spec under the same name is refused, naming the journal.
    std::fs::write(&spec, std::fs::read_to_string(&spec).unwrap().replace("seed = 4", "seed = 5")).unwrap();
    let (code, _, err) = flowcast(&["sweep", spec.to_str().unwrap(), "--json"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("journal.jsonl") && err.contains("another sweep spec"), "{err}");
}

#[test]
fn grid_sweep_rejects_a_bad_key_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = r#"
name = "bad"
base = "exp.toml"
strategy = "grid"
[params."training.lrr"]
dist = "categorical"
values = [0.001, 0.01]
"#;
    let spec = write_sweep(tmp.path(), &base(1, 1), sweep);
    let (code, _, err) = flowcast(&["sweep", spec.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sweep.toml") && err.contains("lrr"), "{err}");
    let spec = write_sweep(tmp.path(), &base(1, 1), &sweep.replace("lrr", "lr").replace("values = [0.001, 0.01]", "values = []"));
    let (code, _, err) = flowcast(&["sweep", spec.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("training.lr") && err.contains("at least one value"), "{err}");
}

#[test]
fn a_killed_worker_s_trial_is_requeued_and_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_sweep(
        tmp.path(),
        &base(6, 12),
        &format!(
            r#"
name = "kill"
base = "exp.toml"
out_dir = "{}"
strategy = "grid"
heartbeat_seconds = 0.3
lease_seconds = 2.0
[params."training.lr"]
dist = "categorical"
values = [0.002, 0.004]
"#,
            tmp.path().join("sweeps").display()
        ),
    );
    // Create the journal, then start one worker and kill it once trial 0 has an epoch done.
    let (code, out, err) = flowcast(&["sweep", spec.to_str().unwrap(), "--report-only", "--json"]);
    assert_eq!(code, 1, "nothing ran yet: {out} {err}");
    let dir = PathBuf::from(json(&out)["dir"].as_str().unwrap());
    let journal = dir.join("journal.jsonl");
    let mut doomed = Command::new(env!("CARGO_BIN_EXE_flowcast"))
        .args(["sweep", "worker", "--journal", journal.to_str().unwrap(), "--worker-id", "doomed", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let ops = journal_ops(&journal);
        if ops.iter().any(|o| o["op"] == "report" && o["trial"] == 0) {
            break;
        }
        assert!(ops.iter().all(|o| o["op"] != "finish"), "the trial finished before the test could kill its worker");
        assert!(t0.elapsed() < Duration::from_secs(120), "no epoch reported within 2 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let ops = journal_ops(&journal);
    assert!(ops.iter().all(|o| o["op"] != "finish"), "killed mid-trial: {ops:?}");

    // Resume the sweep: the dead worker's lease expires, the trial is re-queued and resumed.
    let (code, out, err) = flowcast(&["sweep", spec.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v = json(&out);
    let t = &v["trials"][0];
    assert_eq!(t["status"], "complete", "{v}");
    assert_eq!(t["attempts"], 2, "{t}");
    assert_eq!(t["epochs"], 6, "{t}");
    assert_eq!(v["trials"][1]["status"], "complete", "{v}");
    let ops = journal_ops(&journal);
    let requeue = ops.iter().find(|o| o["op"] == "requeue" && o["trial"] == 0).expect("a requeue op");
    assert!(requeue["reason"].as_str().unwrap().contains("doomed"), "{requeue}");
    // The new worker went on from the killed one's checkpoint, not from scratch.
    let logs: String = std::fs::read_dir(dir.join("logs")).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    assert!(logs.contains("resuming after epoch"), "{logs}");
    // …and the resumed trial equals an uninterrupted run.
    let (code, out, err) = flowcast(&[
        "reproduce",
        "--run",
        t["run_dir"].as_str().unwrap(),
        "--quiet",
        "--json",
        "--runs-dir",
        tmp.path().join("again").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(json(&out)["reproduction"]["identical"], true, "{out}");
}

/// A single-node Slurm cluster (slurmctld + slurmd, auth/none, loopback ports, state in a temp
/// dir) for the length of a test; the daemons are killed on drop.
struct Cluster {
    conf: PathBuf,
    daemons: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn out_of(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd).args(args).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        || Path::new("/usr/sbin").join(bin).is_file()
}

fn slurm_bin(bin: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(bin)).find(|p| p.is_file()))
        .unwrap_or_else(|| Path::new("/usr/sbin").join(bin))
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let missing: Vec<&str> = ["slurmctld", "slurmd", "sbatch", "squeue", "sinfo"].into_iter().filter(|b| !on_path(b)).collect();
        if !missing.is_empty() {
            eprintln!("SKIPPED: Slurm binaries missing ({}); install Debian's slurm-wlm (CI does)", missing.join(", "));
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for s in ["state", "spool", "log"] {
            std::fs::create_dir_all(d.join(s)).unwrap();
        }
        let user = out_of("id", &["-un"]);
        let host = out_of("hostname", &["-s"]);
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let conf = d.join("slurm.conf");
        let text = format!(
            "ClusterName=flowcast\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={}\nSlurmdPort={}\nSlurmUser={user}\nSlurmdUser={user}\n\
             AuthType=auth/none\nCredType=cred/none\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\nSlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/none\nSchedulerType=sched/builtin\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\nReturnToService=2\nMpiDefault=none\nMinJobAge=600\n\
             NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\nPartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            free_port(),
            free_port(),
            d = d.display()
        );
        std::fs::write(&conf, text).unwrap();
        let spawn = |bin: &str, extra: &[&str]| {
            Command::new(slurm_bin(bin))
                .args(["-D", "-f", conf.to_str().unwrap()])
                .args(extra)
                .env("SLURM_CONF", &conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {bin}: {e}"))
        };
        let mut c = Cluster { conf: conf.clone(), daemons: vec![], _dir: dir };
        c.daemons.push(spawn("slurmctld", &["-i"]));
        c.daemons.push(spawn("slurmd", &[]));
        let t0 = Instant::now();
        loop {
            let o = Command::new("sinfo").args(["-h", "-o", "%T"]).env("SLURM_CONF", &conf).output().unwrap();
            let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if s == "idle" {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let log = |f: &str| std::fs::read_to_string(c._dir.path().join("log").join(f)).unwrap_or_default();
                panic!(
                    "the test cluster is not idle after 30 s (sinfo: {s:?})\nslurmctld: {}\nslurmd: {}",
                    log("slurmctld.log"),
                    log("slurmd.log")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("test Slurm cluster ready in {:.1} s", t0.elapsed().as_secs_f64());
        Some(c)
    }
}

#[test]
fn slurm_job_array_runs_a_four_trial_sweep() {
    let Some(cluster) = Cluster::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_sweep(
        tmp.path(),
        &base(2, 3),
        &format!(
            r#"
name = "slurm"
base = "exp.toml"
out_dir = "{}"
strategy = "random"
trials = 4
seed = 9
workers = 2
[slurm]
poll_seconds = 0.5
[params."training.lr"]
dist = "log_uniform"
low = 0.0005
high = 0.05
[params."columns.window"]
dist = "categorical"
values = [8, 16]
"#,
            tmp.path().join("sweeps").display()
        ),
    );
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_flowcast"))
        .args(["sweep", spec.to_str().unwrap(), "--backend", "slurm", "--json"])
        .env("SLURM_CONF", &cluster.conf)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("slurm sweep: {:.1} s", t0.elapsed().as_secs_f64());
    let v = json(&stdout);
    let dir = PathBuf::from(v["dir"].as_str().unwrap_or_default());
    let task_logs: String = std::fs::read_dir(dir.join("slurm"))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| format!("== {}\n{}", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}\n{task_logs}");
    check_results(&v, 4, &["training.lr", "columns.window"]);
    let s = &v["backend"]["slurm"];
    assert_eq!(s["array"], "0-3%2", "{s}");
    let tasks = s["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4, "{s}");
    assert!(tasks.iter().all(|t| t["state"] == "COMPLETED" && t["exit_code"] == "0:0"), "{s}");
    let script = std::fs::read_to_string(s["script"].as_str().unwrap()).unwrap();
    assert!(script.contains("#SBATCH --array=0-3%2") && script.contains("sweep' 'worker' '--journal'"), "{script}");
    // Every trial ran in an array task (the journal names the Slurm worker).
    let ops = journal_ops(&dir.join("journal.jsonl"));
    let workers: Vec<&str> = ops.iter().filter(|o| o["op"] == "create_trial").map(|o| o["worker"].as_str().unwrap()).collect();
    assert_eq!(workers.len(), 4);
    let job = s["job_id"].as_str().unwrap();
    assert!(workers.iter().all(|w| w.starts_with(&format!("slurm-{job}_"))), "{workers:?}");
    // Two windows: at most two prepared-data variants, one shared event set.
    let cached: Vec<_> = std::fs::read_dir(dir.join("cache")).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().is_dir()).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
}
