//! TransLOB-style transformer (Wallbridge 2020): causal dilated 1-D convolutions, layer norm, a
//! linear positional channel, causally masked transformer encoder blocks, then a flattened MLP
//! head. docs/models.md § transformer.

use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig1d};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// Hyperparameters of the transformer. Defaults are the paper's (window 100, five convolutions
/// of 14 filters with dilations 1..16, 3 heads, 2 blocks, a 64-unit head).
#[derive(Config, Debug)]
pub struct TransLobConfig {
    /// Features per time step (set from the data).
    pub d_input: usize,
    /// Output classes.
    pub n_classes: usize,
    /// Window length: the head flattens [window, d_model], so it is fixed at build time.
    #[config(default = 100)]
    pub window: usize,
    /// Filters of each causal convolution; d_model = conv_channels + 1 (the position channel).
    #[config(default = 14)]
    pub conv_channels: usize,
    /// Causal convolutions; layer i has dilation 2^i.
    #[config(default = 5)]
    pub conv_layers: usize,
    /// Kernel width of the causal convolutions.
    #[config(default = 2)]
    pub kernel_size: usize,
    /// Attention heads; must divide d_model.
    #[config(default = 3)]
    pub heads: usize,
    /// Transformer encoder blocks.
    #[config(default = 2)]
    pub depth: usize,
    /// Feed-forward width inside each block; 0 means 4 × d_model.
    #[config(default = 0)]
    pub d_ff: usize,
    /// Hidden units of the MLP head.
    #[config(default = 64)]
    pub mlp_hidden: usize,
    /// Dropout in the encoder blocks and the head (training only).
    #[config(default = 0.1)]
    pub dropout: f64,
}

/// The TransLOB-style network.
#[derive(Module, Debug)]
pub struct TransLob {
    pub convs: Vec<Conv1d>,
    pub norm: LayerNorm,
    pub encoder: TransformerEncoder,
    pub fc1: Linear,
    pub fc2: Linear,
    pub dropout: Dropout,
    pub window: usize,
}

impl TransLobConfig {
    /// Model width seen by attention: the convolution channels plus the position channel.
    pub fn d_model(&self) -> usize {
        self.conv_channels + 1
    }
    /// Feed-forward width actually used.
    pub fn d_ff_resolved(&self) -> usize {
        if self.d_ff == 0 {
            4 * self.d_model()
        } else {
            self.d_ff
        }
    }

    /// Checks the hyperparameters, so a bad TOML value is an error rather than a panic.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (k, v) in [
            ("window", self.window),
            ("conv_channels", self.conv_channels),
            ("conv_layers", self.conv_layers),
            ("kernel_size", self.kernel_size),
            ("heads", self.heads),
            ("depth", self.depth),
            ("mlp_hidden", self.mlp_hidden),
        ] {
            if v == 0 {
                return Err((k, "must be at least 1".into()));
            }
        }
        if self.conv_layers > 16 {
            return Err(("conv_layers", "at most 16 (dilation 2^i)".into()));
        }
        if !self.d_model().is_multiple_of(self.heads) {
            return Err(("heads", format!("must divide d_model = conv_channels + 1 = {}", self.d_model())));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(("dropout", format!("must be in [0, 1), got {}", self.dropout)));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> TransLob {
        let c = self.conv_channels;
        let convs = (0..self.conv_layers)
            .map(|i| {
                let dilation = 1usize << i;
                let c_in = if i == 0 { self.d_input } else { c };
                // Causal: pad only on the left, by the receptive field of the kernel.
                Conv1dConfig::new(c_in, c, self.kernel_size)
                    .with_dilation(dilation)
                    .with_padding(PaddingConfig1d::Explicit(dilation * (self.kernel_size - 1), 0))
                    .init(device)
            })
            .collect();
        let d_model = self.d_model();
        TransLob {
            convs,
            norm: LayerNormConfig::new(c).init(device),
            encoder: TransformerEncoderConfig::new(d_model, self.d_ff_resolved(), self.heads, self.depth)
                .with_dropout(self.dropout)
                .init(device),
            fc1: LinearConfig::new(self.window * d_model, self.mlp_hidden).init(device),
            fc2: LinearConfig::new(self.mlp_hidden, self.n_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            window: self.window,
        }
    }
}

impl TransLob {
    /// [batch, window, features] → logits [batch, classes]
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [batch, seq, _] = x.dims();
        assert_eq!(seq, self.window, "transformer was built for windows of {} steps, got {seq}", self.window);
        let device = x.device();
        let mut h = x.swap_dims(1, 2); // [batch, features, T]
        for conv in &self.convs {
            h = relu(conv.forward(h)); // [batch, C, T]
        }
        let h = self.norm.forward(h.swap_dims(1, 2)); // [batch, T, C]
        let pos = position_channel(seq, &device).expand([batch, seq, 1]); // [batch, T, 1]
        let h = Tensor::cat(vec![h, pos], 2); // [batch, T, C+1]
        let mask = generate_autoregressive_mask(batch, seq, &device);
        let h = self.encoder.forward(TransformerEncoderInput::new(h).mask_attn(mask)); // [batch, T, d]
        let [_, _, d] = h.dims();
        let h = h.reshape([batch, seq * d]); // [batch, T·d]
        let h = self.dropout.forward(relu(self.fc1.forward(h))); // [batch, mlp_hidden]
        self.fc2.forward(h) // [batch, classes]
    }
}

/// TransLOB's positional encoding: the time index mapped linearly onto [-1, 1], as one extra
/// channel. [1, T, 1]
fn position_channel(seq: usize, device: &Device) -> Tensor<3> {
    let denom = (seq.max(2) - 1) as f32;
    let pos: Vec<f32> = (0..seq).map(|t| -1.0 + 2.0 * t as f32 / denom).collect();
    Tensor::<1>::from_floats(pos.as_slice(), device).reshape([1, seq, 1])
}
