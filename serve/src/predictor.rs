//! The candle twin of a deep model as a contract `Predictor`: what `flowcast predict`, the
//! inference server and the backtest run.

use crate::Model;
use flowcast_contract::card::ModelCard;
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
