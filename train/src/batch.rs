//! burn's side of the window contract: a `Batcher` over the contract's window views (one copy per
//! batch, `WindowBatcher::fill`) and the burn model as a contract `Predictor`.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::{Int, TensorData};
use flowcast_contract::card::ModelCard;
use flowcast_contract::window::{WindowBatcher, WindowItem};
use flowcast_contract::{Batch, Outputs, Predictor, PredictorInfo};
use flowcast_models::Model;

/// A batch: inputs `[B, T, F]` and classes `[B]`.
#[derive(Clone, Debug)]
pub struct WindowBatch {
    pub inputs: Tensor<3>,
    pub targets: Tensor<1, Int>,
}

/// burn `Batcher` of window items.
#[derive(Clone, Copy, Debug)]
pub struct BurnBatcher(pub WindowBatcher);

impl Batcher<WindowItem, WindowBatch> for BurnBatcher {
    fn batch(&self, items: Vec<WindowItem>, device: &Device) -> WindowBatch {
        let b = items.len();
        let mut buf = Vec::new();
        self.0.fill(&items, &mut buf);
        let inputs = Tensor::<3>::from_data(TensorData::new(buf, [b, self.0.window, self.0.features]), device);
        let labels: Vec<i64> = items.iter().map(|it| it.label as i64).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), device);
        WindowBatch { inputs, targets }
    }
}

/// A burn model on a device, in inference mode, as a `Predictor`.
pub struct BurnPredictor {
    model: Model,
    device: Device,
    info: PredictorInfo,
}

impl BurnPredictor {
    pub fn new(model: &Model, device: &Device, name: &str, classes: &[String], window: usize, features: usize) -> BurnPredictor {
        BurnPredictor { model: model.valid(), device: device.clone(), info: PredictorInfo::classifier(name, classes, window, features) }
    }

    /// Loads the exported model of `dir` (card already validated) onto `device`.
    pub fn load(dir: &std::path::Path, card: &ModelCard, device: &Device) -> crate::Result<BurnPredictor> {
        let (model, config) = flowcast_models::export::load(dir, device)?;
        let inp = &card.preprocessing.inputs;
        Ok(BurnPredictor::new(&model, device, config.architecture().name(), &card.classes, inp.window, inp.names.len()))
    }
}

impl Predictor for BurnPredictor {
    fn info(&self) -> &PredictorInfo {
        &self.info
    }
    fn predict(&self, b: &Batch<'_>, out: &mut Outputs) -> flowcast_contract::Result<()> {
        self.info.check(b)?;
        let x = Tensor::<3>::from_data(TensorData::new(b.x.to_vec(), [b.batch, b.window, b.features]), &self.device);
        let p = softmax(self.model.forward(x), 1);
        out.probs.extend(p.into_data().iter::<f32>());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowcast_contract::window::{Matrix, WindowSet};
    use std::sync::Arc;

    #[test]
    fn batch_has_shape_b_t_f_and_the_views_values() {
        let m = Arc::new(Matrix { names: (0..3).map(|c| format!("c{c}")).collect(), values: (0..30).map(|v| v as f32).collect() });
        let ws = WindowSet::new(m.clone(), 4, vec![3, 9], vec![2, 0]);
        let b = BurnBatcher(WindowBatcher { window: 4, features: 3 });
        let batch = b.batch(ws.items(&[1, 0]), &Device::flex());
        assert_eq!(batch.inputs.dims(), [2, 4, 3]);
        let v: Vec<f32> = batch.inputs.into_data().try_to_vec().unwrap();
        assert_eq!(&v[..12], &m.values[18..30]);
        assert_eq!(&v[12..], &m.values[0..12]);
        let t: Vec<i64> = batch.targets.into_data().iter::<i64>().collect();
        assert_eq!(t, vec![0, 2]);
    }
}
