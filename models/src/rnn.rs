//! Recurrent classifiers: stacked (optionally bidirectional) LSTM or GRU over the window, the
//! final hidden state through a linear head. docs/models.md § lstm / gru.

use burn::nn::{BiGru, BiGruConfig, BiLstm, BiLstmConfig, Dropout, DropoutConfig, Gru, GruConfig, Linear, LinearConfig, Lstm, LstmConfig};
use burn::prelude::*;

/// Which recurrent cell a [`RnnClassifier`] stacks.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum RnnCell {
    /// Long short-term memory (Hochreiter & Schmidhuber 1997), PyTorch gate equations.
    Lstm,
    /// Gated recurrent unit (Cho et al. 2014), PyTorch's "reset after" variant.
    Gru,
}

impl RnnCell {
    /// Registry name of the architecture built from this cell.
    pub fn name(self) -> &'static str {
        match self {
            RnnCell::Lstm => "lstm",
            RnnCell::Gru => "gru",
        }
    }
}

/// Hyperparameters of an LSTM/GRU classifier.
#[derive(Config, Debug)]
pub struct RnnClassifierConfig {
    /// Recurrent cell type.
    pub cell: RnnCell,
    /// Features per time step (set from the data, not a hyperparameter).
    pub d_input: usize,
    /// Output classes (set from the labels).
    pub n_classes: usize,
    /// Hidden units per direction of every layer.
    #[config(default = 64)]
    pub hidden: usize,
    /// Stacked recurrent layers.
    #[config(default = 1)]
    pub layers: usize,
    /// Run a second, time-reversed recurrence per layer and concatenate both.
    #[config(default = false)]
    pub bidirectional: bool,
    /// Dropout between stacked layers (training only; as PyTorch's `dropout` argument).
    #[config(default = 0.0)]
    pub dropout: f64,
}

/// One layer of the stack; the variant decides the tensor names (docs/models.md).
// A handful per model; boxing would sit between burn's `Module` derive and the tensor names.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum RnnLayer {
    Lstm(Lstm),
    BiLstm(BiLstm),
    Gru(Gru),
    BiGru(BiGru),
}

impl RnnLayer {
    /// [batch, seq, d_in] → [batch, seq, hidden × directions]
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            RnnLayer::Lstm(m) => crate::rnn_op::lstm(m, x),
            RnnLayer::BiLstm(m) => m.forward(x, None).0,
            RnnLayer::Gru(m) => crate::rnn_op::gru(m, x),
            RnnLayer::BiGru(m) => m.forward(x, None).0,
        }
    }
}

/// Stacked recurrent network with a linear classification head.
#[derive(Module, Debug)]
pub struct RnnClassifier {
    pub layers: Vec<RnnLayer>,
    pub dropout: Dropout,
    pub head: Linear,
    pub hidden: usize,
    pub bidirectional: bool,
}

impl RnnClassifierConfig {
    /// Checks the hyperparameters, so a bad TOML value is an error rather than a panic.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.hidden == 0 {
            return Err(("hidden", "must be at least 1".into()));
        }
        if self.layers == 0 {
            return Err(("layers", "must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(("dropout", format!("must be in [0, 1), got {}", self.dropout)));
        }
        Ok(())
    }

    /// Builds the module with freshly initialised weights (burn's defaults: Xavier-normal gates).
    pub fn init(&self, device: &Device) -> RnnClassifier {
        let dirs = if self.bidirectional { 2 } else { 1 };
        let layers = (0..self.layers)
            .map(|i| {
                let d_in = if i == 0 { self.d_input } else { self.hidden * dirs };
                match (self.cell, self.bidirectional) {
                    (RnnCell::Lstm, false) => RnnLayer::Lstm(LstmConfig::new(d_in, self.hidden, true).init(device)),
                    (RnnCell::Lstm, true) => RnnLayer::BiLstm(BiLstmConfig::new(d_in, self.hidden, true).init(device)),
                    (RnnCell::Gru, false) => RnnLayer::Gru(GruConfig::new(d_in, self.hidden, true).init(device)),
                    (RnnCell::Gru, true) => RnnLayer::BiGru(BiGruConfig::new(d_in, self.hidden, true).init(device)),
                }
            })
            .collect();
        RnnClassifier {
            layers,
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(self.hidden * dirs, self.n_classes).init(device),
            hidden: self.hidden,
            bidirectional: self.bidirectional,
        }
    }
}

impl RnnClassifier {
    /// [batch, seq, features] → logits [batch, classes]
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let mut x = x;
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x); // [batch, seq, hidden × dirs]
            if i + 1 < n {
                x = self.dropout.forward(x);
            }
        }
        let [batch, seq, _] = x.dims();
        let h = self.hidden;
        // Final state of each direction: the forward pass ends at t = seq-1, the reverse at t = 0.
        let last = if self.bidirectional {
            let fwd = x.clone().slice(s![.., seq - 1, 0..h]);
            let rev = x.slice(s![.., 0, h..2 * h]);
            Tensor::cat(vec![fwd, rev], 2)
        } else {
            x.slice(s![.., seq - 1, ..])
        }; // [batch, 1, hidden × dirs]
        let last = last.reshape([batch, h * if self.bidirectional { 2 } else { 1 }]);
        self.head.forward(last) // [batch, classes]
    }
}
