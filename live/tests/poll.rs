//! The polling imbalance monitor against the mock exchange: one CSV row per poll (a NaN row for
//! the poll whose retries all failed), the EWMA / z-score / return columns recomputed from the
//! CSV, and the JSON summary.

mod common;
use common::*;
use flowcast_datasets::loaders::binance::Market;
use flowcast_live::mock::{MockConfig, MockExchange};
use flowcast_live::poll::{poll, retry_policy, PollConfig};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_writes_csv_and_summary() {
    let Some(files) = recordings(Market::Spot, &["BTCUSDT"]) else { return };
    let mut mc = MockConfig::new(Market::Spot, files);
    mc.start_immediately = true;
    mc.speed = 10.0;
    // Request 3 fails once and is retried within its poll; requests 6-8 fail: poll 5 has no row.
    mc.faults.http_errors =
        vec![("BTCUSDT".into(), 3, 503, 0), ("BTCUSDT".into(), 6, 500, 0), ("BTCUSDT".into(), 7, 500, 0), ("BTCUSDT".into(), 8, 429, 0)];
    let mock = MockExchange::start(mc).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let interval = Duration::from_millis(100);
    let mut cfg = PollConfig::new(Market::Spot, "BTCUSDT", interval, 40, dir.path());
    cfg.rest_url = mock.rest_url();
    cfg.levels = 20;
    cfg.ema_span = 5.0;
    cfg.z_window = 10;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let summary = poll(cfg.clone(), retry_policy(interval), rx).await.unwrap();

    let csv = std::fs::read_to_string(&cfg.csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "ts_ns,ok,best_bid,best_ask,mid,spread,bid_vol,ask_vol,obi,pw_obi,obi_ema,obi_z,mid_ret_next,attempts"
    );
    let rows: Vec<Vec<f64>> = lines.map(|l| l.split(',').map(|v| v.parse::<f64>().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 40);
    let failed: Vec<usize> = rows.iter().enumerate().filter(|(_, r)| r[1] == 0.0).map(|(i, _)| i).collect();
    assert_eq!(failed.len(), 1, "one failed poll: {failed:?}");
    let f = &rows[failed[0]];
    assert!(f[2..13].iter().all(|v| v.is_nan()), "failed row keeps NaNs: {f:?}");
    assert_eq!(f[13], 3.0, "three attempts");
    assert_eq!(rows[2][13], 2.0, "the 503 was retried within poll 2");
    let alpha = 2.0 / 6.0;
    let mut prev_ema: Option<f64> = None;
    let mut window: Vec<f64> = Vec::new();
    for (t, r) in rows.iter().enumerate() {
        if r[1] == 0.0 {
            continue;
        }
        let (bid, ask, mid, obi) = (r[2], r[3], r[4], r[8]);
        assert!(bid < ask && (mid - (bid + ask) / 2.0).abs() < 1e-9);
        assert!((-1.0..=1.0).contains(&obi) && (-1.0..=1.0).contains(&r[9]));
        assert!((obi - (r[6] - r[7]) / (r[6] + r[7])).abs() < 1e-12);
        let ema = prev_ema.map(|e| e + alpha * (obi - e)).unwrap_or(obi);
        assert!((r[10] - ema).abs() < 1e-9, "row {t}: ema {} vs {ema}", r[10]);
        prev_ema = Some(ema);
        window.push(obi);
        if window.len() > 10 {
            window.remove(0);
        }
        let n = window.len() as f64;
        let m = window.iter().sum::<f64>() / n;
        let sd = (window.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt();
        if window.len() >= 2 && sd > 1e-9 {
            assert!((r[11] - (obi - m) / sd).abs() < 1e-6, "row {t}: z {} vs {}", r[11], (obi - m) / sd);
        }
        if let Some(next) = rows.get(t + 1) {
            let want = if next[1] == 1.0 { (next[4] / mid).ln() } else { f64::NAN };
            assert!(r[12] == want || (r[12].is_nan() && want.is_nan()), "row {t}: return {} vs {want}", r[12]);
        }
    }
    assert!(rows.windows(2).any(|w| w[0][4] != w[1][4]), "the mid moves during the replay");

    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg.summary).unwrap()).unwrap();
    assert_eq!(s, summary);
    assert_eq!((s["samples"].as_u64(), s["ok_samples"].as_u64(), s["failed_samples"].as_u64()), (Some(40), Some(39), Some(1)));
    assert_eq!(s["failed_attempts"], 4);
    let q = &s["quantiles"]["obi"];
    assert!(q["p05"].as_f64().unwrap() <= q["p50"].as_f64().unwrap() && q["p50"].as_f64().unwrap() <= q["p95"].as_f64().unwrap());
    let p90 = s["abs_obi_p90"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p90));
    let mean_obi = rows.iter().filter(|r| r[1] == 1.0).map(|r| r[8]).sum::<f64>() / 39.0;
    assert!((s["means"]["obi"].as_f64().unwrap() - mean_obi).abs() < 1e-12);
    for k in ["obi_vs_ret_contemporaneous", "obi_vs_ret_next", "pw_obi_vs_ret_contemporaneous", "pw_obi_vs_ret_next"] {
        let c = &s["correlation"][k];
        assert!(c.is_null() || (-1.0..=1.0).contains(&c.as_f64().unwrap()), "{k}: {c}");
    }
    assert_eq!(s["config"]["levels"], 20);
    assert_eq!(s["config"]["ema_span"], 5.0);
}
