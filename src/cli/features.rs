//! `flowcast features`: the feature registry, and features + labels + splits for a dataset.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use flowcast_datasets::store;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum FeaturesCmd {
    /// Print the feature registry: name, group, parameters, warm-up, reference.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Features, labels, chronological splits and train-fitted normalisation, written to --out.
    Compute(Box<ComputeArgs>),
}

#[derive(Args)]
pub struct ComputeArgs {
    /// Dataset directory (from `data import`).
    #[arg(long)]
    data: PathBuf,
    /// Feature set TOML (`[[feature]]` tables); default: the full registry.
    #[arg(long)]
    set: Option<PathBuf>,
    /// Output directory: features.parquet, normalization.json, feature_set.json, labels.json, summary.json.
    #[arg(long)]
    out: PathBuf,
    /// Also write features.csv.
    #[arg(long)]
    csv: bool,
    /// Print summary.json on stdout.
    #[arg(long)]
    json: bool,
    /// Training fraction of the rows (chronological).
    #[arg(long, default_value_t = 0.7)]
    train: f64,
    /// Validation fraction; the test split gets the rest.
    #[arg(long, default_value_t = 0.15)]
    validation: f64,
    /// Normalisation recorded in normalization.json: zscore, minmax, decimal.
    #[arg(long, default_value = "zscore")]
    normalization: String,
    /// k of the smoothed labels (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "10,20,50,100")]
    smooth_k: Vec<usize>,
    /// Skip the past-mean variant of the smoothed labels.
    #[arg(long)]
    no_smooth_past: bool,
    /// Fixed event (row) horizons of the return labels.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    horizons: Vec<usize>,
    /// Clock horizons of the return labels (e.g. 1s,10s,1m,5m).
    #[arg(long, value_delimiter = ',', default_value = "1s,10s,1m,5m")]
    clock: Vec<String>,
    /// Fixed class threshold alpha instead of the balanced-on-train rule.
    #[arg(long)]
    alpha: Option<f64>,
}

pub fn run(cmd: FeaturesCmd) -> Result<bool> {
    match cmd {
        FeaturesCmd::List { json } => {
            if json {
                println!("{}", flowcast_datasets::features::list_report().to_json());
            } else {
                print!("{}", flowcast_datasets::features::list_table());
            }
            Ok(true)
        }
        FeaturesCmd::Compute(a) => run_compute(*a),
    }
}

fn run_compute(a: ComputeArgs) -> Result<bool> {
    use flowcast_datasets::features::FeatureSet;
    use flowcast_datasets::labels::{AlphaRule, LabelConfig};
    use flowcast_datasets::normalize::Method;
    use flowcast_datasets::prepare::{self, NormalizationChoice, PrepareConfig};
    use flowcast_datasets::splits::SplitConfig;
    let set = match &a.set {
        Some(p) => {
            let s = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            FeatureSet::from_toml(&s).with_context(|| format!("feature set {}", p.display()))?
        }
        None => FeatureSet::default_set(),
    };
    let clock = a
        .clock
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| flowcast_datasets::time::parse_duration(s).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let cfg = PrepareConfig {
        labels: LabelConfig {
            smooth_k: a.smooth_k,
            smooth_past: !a.no_smooth_past,
            event_horizons: a.horizons,
            clock_horizons_ns: clock,
            alpha: a.alpha.map_or(AlphaRule::BalancedOnTrain, |alpha| AlphaRule::Fixed { alpha }),
        },
        splits: SplitConfig::fractions(a.train, a.validation),
        normalization: NormalizationChoice(Method::parse(&a.normalization)?),
    };
    let ds = store::read_dataset(&a.data)?;
    let prepared = prepare::run(&ds, &set, &cfg)?;
    let (report, summary) = prepared.write(&a.out, a.csv)?;
    if a.json {
        println!("{summary}");
    } else {
        print!("{}", report.table());
    }
    Ok(report.ok)
}
