//! The candle twin of a deep model as a contract `Predictor`: what `flowcast predict`, the
//! inference server and the backtest run.

use crate::Model;
use flowcast_contract::card::{Family, ModelCard};
use flowcast_contract::{Batch, ContractError, Outputs, Predictor, PredictorInfo};
use std::path::Path;

pub struct CandlePredictor {
    model: Model,
    info: PredictorInfo,
}

impl CandlePredictor {
    /// Loads and validates the card in `dir`, then the candle model beside it.
    pub fn load(dir: &Path) -> Result<(CandlePredictor, ModelCard), crate::ServeError> {
        let card = ModelCard::load(dir)?;
        let model = Model::load_dir(dir)?;
        let p = CandlePredictor::new(model, &card);
        Ok((p, card))
    }

    /// Wraps a loaded model with the card's classes and input shape.
    pub fn new(model: Model, card: &ModelCard) -> CandlePredictor {
        let inp = &card.preprocessing.inputs;
        let info = PredictorInfo::classifier(model.spec().name(), &card.classes, inp.window, inp.names.len());
        CandlePredictor { model, info }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }
}

impl Predictor for CandlePredictor {
    fn info(&self) -> &PredictorInfo {
        &self.info
    }
    fn predict(&self, b: &Batch<'_>, out: &mut Outputs) -> flowcast_contract::Result<()> {
        self.info.check(b)?;
        let logits =
            self.model.logits(b.x, b.batch, b.window).map_err(|e| ContractError::input("x", format!("candle {}: {e}", self.info.name)))?;
        out.push_logits(&logits);
        Ok(())
    }
}

/// Any exported model's burn-free predictor, by its card's family — what serving, the backtest
/// and ensemble members all load: deep models through the serving kernels, `lightgbm` through the
/// contract's model.txt evaluator, `bayes_online`'s posterior frozen as exported, an `ensemble`
/// with its members loaded the same way (a member is never itself an ensemble).
pub fn load_predictor(dir: &Path, card: &ModelCard) -> flowcast_contract::Result<Box<dyn Predictor + Send + Sync>> {
    Ok(match card.family {
        Family::Deep => {
            let m = Model::load_dir(dir).map_err(|e| ContractError::Invalid(format!("{}: {e}", dir.display())))?;
            Box::new(CandlePredictor::new(m, card))
        }
        Family::Lightgbm => Box::new(flowcast_contract::gbdt::GbdtPredictor::load(dir, card)?),
        Family::BayesOnline => Box::new(flowcast_contract::bayes::BayesOnline::load(dir, card)?),
        Family::Ensemble => Box::new(flowcast_contract::ensemble::EnsemblePredictor::load(dir, card, &member)?),
    })
}

/// An `ensemble` card's predictor as its own type (its members loaded as [`load_predictor`]
/// loads them), for callers that keep a meta-learner state of their own (stream mode's Hedge).
pub fn load_ensemble(dir: &Path, card: &ModelCard) -> flowcast_contract::Result<flowcast_contract::ensemble::EnsemblePredictor> {
    flowcast_contract::ensemble::EnsemblePredictor::load(dir, card, &member)
}

fn member(dir: &Path, card: &ModelCard) -> flowcast_contract::Result<Box<dyn Predictor + Send + Sync>> {
    if card.family == Family::Ensemble {
        return Err(ContractError::Invalid(format!("{}: an ensemble member cannot be an ensemble", dir.display())));
    }
    load_predictor(dir, card)
}
