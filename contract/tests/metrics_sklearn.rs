//! Metrics against scikit-learn's values on a fixed vector of predictions. The fixture is made
//! once by tests/fixtures/train/make_metrics_fixture.py and committed, so this test needs no sklearn.

use flowcast_contract::metrics::{argmax, Metrics};
use serde_json::Value;

fn close(name: &str, got: f64, want: &Value) {
    let w = want.as_f64().unwrap_or_else(|| panic!("{name}: fixture value {want} is not a number"));
    assert!((got - w).abs() < 1e-12, "{name}: flowcast {got} vs scikit-learn {w}");
}

#[test]
fn metrics_match_scikit_learn() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/train/metrics_sklearn.json");
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let k = fx["classes"].as_u64().unwrap() as usize;
    let y: Vec<usize> = fx["y_true"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let probs: Vec<f32> =
        fx["probs"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32)).collect();
    // Hard predictions agree with numpy's argmax (first maximum on the many 2-decimal ties).
    let pred: Vec<usize> = probs.chunks(k).map(argmax).collect();
    let want_pred: Vec<usize> = fx["y_pred"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(pred, want_pred);

    let m = Metrics::compute(&y, &probs, k);
    let e = &fx["expected"];
    close("accuracy", m.accuracy, &e["accuracy"]);
    close("macro_f1", m.macro_f1, &e["macro_f1"]);
    close("mcc", m.mcc, &e["mcc"]);
    close("cohen_kappa", m.cohen_kappa, &e["cohen_kappa"]);
    for c in 0..k {
        let pc = &m.per_class[c];
        close("precision", pc.precision, &e["precision"][c]);
        close("recall", pc.recall, &e["recall"][c]);
        close("f1", pc.f1, &e["f1"][c]);
        assert_eq!(pc.support, e["support"][c].as_u64().unwrap());
        // Scores are f32 in flowcast (the model's output type): the 2-decimal fixture values are
        // compared as f32 too, so ties and order are the same and areas agree to rounding.
        close("roc_auc_ovr", pc.roc_auc.unwrap(), &e["roc_auc_ovr"][c]);
        close("average_precision", pc.pr_auc.unwrap(), &e["average_precision"][c]);
    }
    close("roc_auc_ovr_macro", m.roc_auc_macro.unwrap(), &e["roc_auc_ovr_macro"]);
    close("average_precision_macro", m.pr_auc_macro.unwrap(), &e["average_precision_macro"]);
    let cm: Vec<Vec<u64>> = serde_json::from_value(e["confusion"].clone()).unwrap();
    assert_eq!(m.confusion, cm);
}
