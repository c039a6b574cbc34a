//! Output tensors and parameters of gRPC answers, shared by `ModelInfer` (grpc.rs) and
//! `ModelStreamInfer` (grpc_stream.rs).

use crate::proto::model_infer_response::InferOutputTensor;
use crate::proto::*;
use crate::signal::{self, Data};
use std::collections::HashMap;

pub fn int_param(v: i64) -> InferParameter {
    InferParameter { parameter_choice: Some(infer_parameter::ParameterChoice::Int64Param(v)) }
}

/// `queue_time_us` and `compute_time_us` response parameters.
pub fn latency_parameters(queue_us: u64, compute_us: u64) -> HashMap<String, InferParameter> {
    HashMap::from([
        ("queue_time_us".to_string(), int_param(queue_us as i64)),
        ("compute_time_us".to_string(), int_param(compute_us as i64)),
    ])
}

/// Output tensors as typed contents, or (raw: what Triton clients read after raw inputs) as
/// `raw_output_contents`.
pub fn output_tensors(ts: Vec<signal::Tensor>, raw: bool) -> (Vec<InferOutputTensor>, Vec<Vec<u8>>) {
    let mut outs = Vec::with_capacity(ts.len());
    let mut raws = Vec::new();
    for t in ts {
        let mut o = InferOutputTensor {
            name: t.name.into(),
            datatype: t.data.datatype().into(),
            shape: t.shape.iter().map(|&d| d as i64).collect(),
            parameters: HashMap::new(),
            contents: None,
        };
        if raw {
            raws.push(t.data.to_le());
        } else {
            o.contents = Some(match t.data {
                Data::F32(v) => InferTensorContents { fp32_contents: v, ..Default::default() },
                Data::I32(v) => InferTensorContents { int_contents: v, ..Default::default() },
                Data::I64(v) => InferTensorContents { int64_contents: v, ..Default::default() },
            });
        }
        outs.push(o);
    }
    (outs, raws)
}
