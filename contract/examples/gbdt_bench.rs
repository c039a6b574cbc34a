//! Time per row of the pure-Rust LightGBM evaluator (`flowcast_contract::gbdt`):
//! `cargo run --release -p flowcast-contract --example gbdt_bench [model.txt]`.
//!
//! Without an argument it times a generated model of the quickstart's size class: 3 classes ×
//! 300 iterations (900 trees) of 31 leaves on 90 features, thresholds and features drawn by
//! SplitMix64; with a path, that model (e.g. `runs/lightgbm_quickstart-*/lightgbm_direction/
//! model.txt`). Rows are pre-generated so the loop times the evaluator alone: raw scores of every
//! tree plus the softmax, one row at a time, as the server calls it.

use flowcast_contract::gbdt::GbdtModel;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Internal nodes of a balanced tree over `leaves` leaves, numbered depth-first as LightGBM
/// numbers splits; returns the child reference of the subtree's root.
fn grow(leaves: usize, next_leaf: &mut i32, nodes: &mut Vec<(i32, i32)>) -> i32 {
    if leaves == 1 {
        let l = *next_leaf;
        *next_leaf += 1;
        return !l;
    }
    let me = nodes.len();
    nodes.push((0, 0));
    let l = grow(leaves / 2, next_leaf, nodes);
    let r = grow(leaves - leaves / 2, next_leaf, nodes);
    nodes[me] = (l, r);
    me as i32
}

fn generated(features: usize, classes: usize, iterations: usize, leaves: usize, rng: &mut Rng) -> String {
    let mut s = format!(
        "tree\nversion=v4\nnum_class={classes}\nnum_tree_per_iteration={classes}\nlabel_index=0\nmax_feature_idx={}\nobjective=multiclass num_class:{classes}\n\n",
        features - 1
    );
    let join = |v: Vec<String>| v.join(" ");
    for t in 0..classes * iterations {
        let mut nodes = Vec::new();
        let mut next = 0;
        grow(leaves, &mut next, &mut nodes);
        let n = nodes.len();
        s += &format!("Tree={t}\nnum_leaves={leaves}\nnum_cat=0\n");
        s += &format!("split_feature={}\n", join((0..n).map(|_| (rng.next() % features as u64).to_string()).collect()));
        s += &format!("threshold={}\n", join((0..n).map(|_| format!("{}", rng.unit() * 4.0 - 2.0)).collect()));
        s += &format!("decision_type={}\n", join((0..n).map(|_| "10".to_string()).collect()));
        s += &format!("left_child={}\n", join(nodes.iter().map(|c| c.0.to_string()).collect()));
        s += &format!("right_child={}\n", join(nodes.iter().map(|c| c.1.to_string()).collect()));
        s += &format!("leaf_value={}\nshrinkage=0.05\n\n\n", join((0..leaves).map(|_| format!("{}", (rng.unit() - 0.5) * 0.1)).collect()));
    }
    s + "end of trees\n"
}

fn main() {
    let mut rng = Rng(7);
    let model = match std::env::args().nth(1) {
        Some(p) => GbdtModel::load(Path::new(&p)).expect("model.txt"),
        None => GbdtModel::parse(&generated(90, 3, 300, 31, &mut rng), Path::new("generated")).expect("generated model"),
    };
    let (f, k) = (model.features, model.outputs());
    let rows = 20_000;
    let x: Vec<f64> = (0..rows * f).map(|_| rng.unit() * 4.0 - 2.0).collect();
    let mut out = vec![0.0; k];
    // Warm-up, then the timed pass.
    for r in x.chunks(f).take(1000) {
        model.predict_row(r, &mut out);
    }
    let t = Instant::now();
    let mut acc = 0.0;
    for r in x.chunks(f) {
        model.predict_row(black_box(r), &mut out);
        acc += out[0];
    }
    black_box(acc);
    let us = t.elapsed().as_secs_f64() * 1e6 / rows as f64;
    println!(
        "gbdt: {} trees ({} iterations × {} outputs), {} leaves, {f} features: {us:.2} µs per row",
        model.trees(),
        model.iterations(),
        k,
        model.leaves()
    );
}
