//! NATS JetStream: publish, replay from a sequence number, a durable consumer that restarts
//! without losing or repeating a batch, and collector → bus equal to the loader's events.
//! Starts its own `nats-server -js` (skips with a message when the binary is missing).

mod common;
use common::*;
use flowcast_datasets::loaders::binance::Market;
use flowcast_datasets::loaders::{self, Format, ImportOptions};
use flowcast_datasets::{flags, Event, EventKind, Instrument, Side};
use flowcast_live::bus::{stream_name, subject, Bus};
use std::time::Duration;

fn batch(i: u64) -> Vec<Event> {
    vec![
        Event::level(Side::Bid, 100_000 + i as i64, 5 + i as i64, 1_000 + i as i64).with_seq(i),
        Event::level(Side::Ask, 100_010 + i as i64, 0, 1_000 + i as i64).with_seq(i).with_flags(flags::BATCH_END),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_replay_and_durable_restart() {
    let Some(nats) = start_nats() else { return };
    let inst = Instrument::new("binance-spot", "BTCUSDT", "0.01", 8).unwrap();
    let bus = Bus::connect(&nats.url).await.unwrap();
    let stream = bus.ensure_stream(&inst).await.unwrap();
    assert_eq!(stream, stream_name(&inst));
    assert_eq!(bus.instrument(&stream).await.unwrap(), inst);
    let subj = subject(&inst);
    for i in 1..=100u64 {
        assert_eq!(bus.publish(&subj, &batch(i), None).await.unwrap(), i);
    }
    // A retried publish with the same id is not stored twice.
    let id = Some("line-100-retry");
    let a = bus.publish(&subj, &batch(100), id).await.unwrap();
    let b = bus.publish(&subj, &batch(100), id).await.unwrap();
    assert_eq!((a, b), (101, 101));

    // Replay from the start and from a sequence number.
    let mut r = bus.replay(&stream, 1).await.unwrap();
    let mut seen = Vec::new();
    while let Some(b) = r.next(Duration::from_secs(2)).await.unwrap() {
        seen.push(b.stream_seq);
        if b.stream_seq <= 100 {
            assert_eq!(b.events, batch(b.stream_seq));
        }
        if seen.len() == 101 {
            break;
        }
    }
    assert_eq!(seen, (1..=101).collect::<Vec<_>>());
    let mut r = bus.replay(&stream, 42).await.unwrap();
    let first = r.next(Duration::from_secs(2)).await.unwrap().unwrap();
    assert_eq!((first.stream_seq, first.events), (42, batch(42)));

    // Durable: read 30, a failing handler leaves message 31 unacknowledged, restart on a new
    // connection, read the rest: every sequence exactly once, in order.
    let mut got: Vec<u64> = Vec::new();
    {
        let mut d = bus.durable(&stream, "server").await.unwrap();
        let mut n = 0;
        while n < 30 {
            n += d
                .handle(30 - n, Duration::from_secs(1), |b| {
                    got.push(b.stream_seq);
                    Ok(())
                })
                .await
                .unwrap();
        }
        let e = d
            .handle(5, Duration::from_secs(1), |b| Err(flowcast_live::LiveError::Config(format!("handler refuses {}", b.stream_seq))))
            .await;
        assert!(e.unwrap_err().to_string().contains("refuses 31"));
    }
    drop(bus);
    let bus = Bus::connect(&nats.url).await.unwrap();
    let mut d = bus.durable(&stream, "server").await.unwrap();
    for _ in 0..40 {
        if got.len() == 101 {
            break;
        }
        d.handle(50, Duration::from_millis(500), |b| {
            got.push(b.stream_seq);
            Ok(())
        })
        .await
        .unwrap();
    }
    assert_eq!(got, (1..=101).collect::<Vec<_>>(), "durable consumer lost or repeated a batch");
    // New messages after the restart arrive once.
    bus.publish(&subj, &batch(7), None).await.unwrap();
    let mut more = Vec::new();
    d.handle(10, Duration::from_secs(1), |b| {
        more.push((b.stream_seq, b.events));
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(more, vec![(102, batch(7))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_publishes_the_loaders_events() {
    let Some(nats) = start_nats() else { return };
    let mut c = Case::new(Market::Spot, &["BTCUSDT"]);
    c.nats = Some(nats.url.clone());
    c.faults.drop_diffs = vec![("BTCUSDT".into(), 30)];
    let Some(o) = run(c).await else { return };
    assert_consistent(&o);
    let imported = loaders::import(Format::Binance, &o.files, &ImportOptions::default()).unwrap();
    let want = &imported.datasets[0].events;
    let bus = Bus::connect(&nats.url).await.unwrap();
    let inst = &imported.datasets[0].meta.instrument;
    let mut r = bus.replay(&stream_name(inst), 1).await.unwrap();
    let mut got = Vec::new();
    while got.len() < want.len() {
        let Some(b) = r.next(Duration::from_secs(2)).await.unwrap() else { break };
        got.extend(b.events);
    }
    assert_eq!(o.report.symbols[0].events_published, want.len() as u64);
    assert_eq!(o.report.nats_acked, Some(r_count(&bus, inst).await));
    assert_eq!(got.len(), want.len());
    assert!(got == *want, "bus events differ from the loader's");
    assert_eq!(got.iter().filter(|e| e.kind == EventKind::Gap).count(), 1);
}

async fn r_count(bus: &Bus, inst: &Instrument) -> u64 {
    let mut s = bus.js.get_stream(stream_name(inst)).await.unwrap();
    s.info().await.unwrap().state.messages
}
