//! `flowcast models`: list the deep model architectures and describe one with its trainable
//! parameter count.

use super::parse_overrides;
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum ModelsCmd {
    /// Every registered architecture (parameter counts at 40 features, 3 classes).
    List {
        #[arg(long)]
        json: bool,
    },
    /// One architecture: resolved config, tensors, module tree and trainable parameters.
    Describe {
        /// Registry name (lstm, gru, deeplob, transformer).
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
            if json {
                let rows: Vec<_> = models
                    .iter()
                    .map(|(a, p)| serde_json::json!({"name": a.name(), "summary": a.summary(), "reference": a.reference(), "params": p}))
                    .collect();
                println!("{}", serde_json::json!({ "models": rows }));
            } else {
                println!("{:<12} {:>10}  summary (params at 40 features, 3 classes)", "model", "params");
                for (a, p) in &models {
                    println!("{:<12} {:>10}  {}", a.name(), p, a.summary());
                }
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
