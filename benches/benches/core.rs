//! Core micro-benchmarks: unmasking beside a plain copy of the same buffer, and receiving
//! single-frame messages through a `Connection` (bytes in → borrowed event out).
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eventum_core::frame::{apply_mask, encode_client_frame, OpCode};
use eventum_core::{handshake::Accept, Config, Connection, Event};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for size in [1024usize, 64 * 1024, 1 << 20] {
        let mut buf = vec![0x5au8; size];
        let src = vec![0xa5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("apply_mask", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box([1, 2, 3, 4]), 0))
        });
        group.bench_with_input(BenchmarkId::new("copy", size), &size, |b, _| {
            b.iter(|| black_box(&mut buf).copy_from_slice(black_box(&src)))
        });
    }
    group.finish();
}

fn open_connection(config: &Arc<Config>) -> Connection {
    let now = Instant::now();
    let mut conn = Connection::new(Arc::clone(config), now);
    conn.handle_input(now, REQUEST);
    while conn.poll_event().is_some() {}
    conn.accept(now, Accept::new()).expect("upgrade accepted");
    let mut sink = Vec::new();
    conn.poll_transmit(&mut sink);
    conn
}

fn receive(c: &mut Criterion) {
    let mut group = c.benchmark_group("receive");
    let config = Arc::new(
        Config::builder()
            .max_frame_size(2 << 20)
            .max_message_size(2 << 20)
            .build()
            .unwrap(),
    );
    for size in [16usize, 1024, 64 * 1024, 1 << 20] {
        // Enough messages per input to amortize the call; about 1 MiB per iteration.
        let count = ((1 << 20) / size).max(1);
        let mut input = Vec::new();
        for _ in 0..count {
            encode_client_frame(&mut input, true, OpCode::Binary, &vec![7u8; size], [1, 2, 3, 4]);
        }
        group.throughput(Throughput::Elements(count as u64));
        let mut conn = open_connection(&config);
        group.bench_with_input(BenchmarkId::new("binary", size), &size, |b, _| {
            b.iter(|| {
                conn.handle_input(Instant::now(), &input);
                let mut n = 0;
                while let Some(event) = conn.poll_event() {
                    if let Event::Binary(data) = event {
                        n += data.len();
                    }
                }
                black_box(n)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, unmask, receive);
criterion_main!(benches);
