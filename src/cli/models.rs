//! `flowcast models`: list the model registry (the deep architectures and the tree family
//! `lightgbm`, the online family `bayes_online`, the stacked `ensemble`) and describe one: a deep
//! architecture with its trainable parameter count, lightgbm and bayes_online with their
//! hyperparameter defaults.

use super::parse_overrides;
use anyhow::Result;
use clap::Subcommand;
use flowcast_train::config::{BayesParams, LightgbmParams, BAYES_ONLINE, ENSEMBLE, LIGHTGBM};

const LIGHTGBM_SUMMARY: &str = "gradient-boosted trees on the window's last feature row (multiclass or regression)";
const ENSEMBLE_SUMMARY: &str =
    "stacked ensemble of registry models on one or more horizons: weighted_average, logistic, hedge or lightgbm (--features lightgbm to train) meta-learner on purged out-of-fold predictions";
const ENSEMBLE_REFERENCE: &str = "Wolpert 1992, Stacked generalization; Freund & Schapire 1997 (Hedge); López de Prado 2018 (purged CV)";
const LIGHTGBM_REFERENCE: &str = "Ke et al. 2017, LightGBM: A Highly Efficient Gradient Boosting Decision Tree (NeurIPS)";
const BAYES_SUMMARY: &str =
    "Bayesian online linear regression of the move (bps) on the last feature row, discounted; Student-t class probabilities";
const BAYES_REFERENCE: &str = "West & Harrison 1997, Bayesian Forecasting and Dynamic Models (2nd ed.), chs. 4 and 10; Bierman 1977";

#[derive(Subcommand)]
pub enum ModelsCmd {
    /// Every registered architecture (parameter counts at 40 features, 3 classes).
    List {
        #[arg(long)]
        json: bool,
    },
    /// One architecture: resolved config, tensors, module tree and trainable parameters.
    Describe {
        /// Registry name (lstm, gru, deeplob, transformer, lightgbm, bayes_online).
        name: String,
        /// Hyperparameter override KEY=VALUE (repeatable); also features=N, classes=N.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ModelsCmd) -> Result<bool> {
    match cmd {
        ModelsCmd::List { json } => {
            let models = flowcast_models::list();
            let built = if cfg!(feature = "lightgbm") { "" } else { " (training needs --features lightgbm)" };
            if json {
                let mut rows: Vec<_> = models
                    .iter()
                    .map(|(a, p)| serde_json::json!({"name": a.name(), "family": "deep", "summary": a.summary(), "reference": a.reference(), "params": p}))
                    .collect();
                rows.push(
                    serde_json::json!({"name": LIGHTGBM, "family": "lightgbm", "summary": LIGHTGBM_SUMMARY, "reference": LIGHTGBM_REFERENCE,
                                             "params": null, "trainable": cfg!(feature = "lightgbm")}),
                );
                rows.push(serde_json::json!({"name": BAYES_ONLINE, "family": "bayes_online", "summary": BAYES_SUMMARY,
                                             "reference": BAYES_REFERENCE, "params": null, "trainable": true}));
                rows.push(serde_json::json!({"name": ENSEMBLE, "family": "ensemble", "summary": ENSEMBLE_SUMMARY,
                                             "reference": ENSEMBLE_REFERENCE, "params": null, "trainable": true}));
                println!("{}", serde_json::json!({ "models": rows }));
            } else {
                println!("{:<12} {:>10}  summary (params at 40 features, 3 classes)", "model", "params");
                for (a, p) in &models {
                    println!("{:<12} {:>10}  {}", a.name(), p, a.summary());
                }
                println!("{LIGHTGBM:<12} {:>10}  {LIGHTGBM_SUMMARY}{built}", "-");
                println!("{BAYES_ONLINE:<12} {:>10}  {BAYES_SUMMARY}", "F + 1");
                println!("{ENSEMBLE:<12} {:>10}  {ENSEMBLE_SUMMARY}", "-");
            }
        }
        ModelsCmd::Describe { name, set, json } if name == LIGHTGBM => {
            let spec = flowcast_train::config::ModelSpec { name: name.clone(), id: None, targets: None, params: parse_overrides(&set)? };
            let p = LightgbmParams::from_spec(&spec).map_err(anyhow::Error::msg)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"name": LIGHTGBM, "family": "lightgbm", "summary": LIGHTGBM_SUMMARY,
                                                  "reference": LIGHTGBM_REFERENCE, "params": p, "trainable": cfg!(feature = "lightgbm")})
                );
            } else {
                println!("model      {LIGHTGBM}\nsummary    {LIGHTGBM_SUMMARY}\nreference  {LIGHTGBM_REFERENCE}");
                println!("input      [batch, seq, F] -> the last row's F features -> class probabilities (or bps)");
                println!("params     {}", serde_json::to_string(&p)?);
                println!("files      model.txt (LightGBM text format), evaluated in pure Rust (flowcast_contract::gbdt)");
            }
        }
        ModelsCmd::Describe { name, set, json } if name == BAYES_ONLINE => {
            let spec = flowcast_train::config::ModelSpec { name: name.clone(), id: None, targets: None, params: parse_overrides(&set)? };
            let p = BayesParams::from_spec(&spec).map_err(anyhow::Error::msg)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"name": BAYES_ONLINE, "family": "bayes_online", "summary": BAYES_SUMMARY,
                                       "reference": BAYES_REFERENCE, "params": p.config, "prior_b_from_data": p.prior_b_from_data,
                                       "trainable": true})
                );
            } else {
                println!("model      {BAYES_ONLINE}\nsummary    {BAYES_SUMMARY}\nreference  {BAYES_REFERENCE}");
                println!("input      [batch, seq, F] -> the last row's F features -> P(down, stationary, up) at ±α, mean and std (bps)");
                println!("params     {} (alpha_bps: the target's α)", serde_json::to_string(&p.config)?);
                if p.prior_b_from_data {
                    println!("prior_b    from the data: prior_a × the training targets' variance");
                }
                println!("files      bayes_state.json (config + posterior), evaluated in pure Rust (flowcast_contract::bayes)");
            }
        }
        ModelsCmd::Describe { name, set, json } => {
            let d = flowcast_models::describe(&name, &parse_overrides(&set)?)?;
            if json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                println!("model      {}\nsummary    {}\nreference  {}", d.name, d.summary, d.reference);
                println!("input      [batch, seq, {}] -> logits [batch, {}]", d.n_features, d.n_classes);
                println!("params     {} trainable", d.params);
                println!("config     {}", d.model["config"]);
                println!("tensors    {} in model.safetensors", d.tensors.len());
                for t in &d.tensors {
                    println!("  {:<48} {:?}", t.name, t.shape);
                }
                println!("architecture\n{}", d.architecture);
            }
        }
    }
    Ok(true)
}
