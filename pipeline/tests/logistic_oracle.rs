//! grist's sparse L-BFGS logistic regression against linfa-logistic (the requested
//! dependency, dense only) on a small dense problem with the same objective:
//! coefficients within 1e-3 and probabilities within 1e-4.
#![allow(clippy::unwrap_used)]

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use pipeline::core::rng::DocRng;
use pipeline::steps::quality::logistic::{LrConfig, SparseRows, fit, logits};

#[test]
fn agrees_with_linfa_logistic_on_a_dense_problem() {
    let (n, d) = (300, 6);
    let truth = [1.5, -2.0, 0.7, 0.0, -0.4, 1.1];
    let mut x = Array2::<f64>::zeros((n, d));
    let mut y = Vec::with_capacity(n);
    for r in 0..n {
        let mut rng = DocRng::new(9, "oracle", &r.to_string());
        let mut z = 0.3;
        for j in 0..d {
            let v = rng.next_f64() * 4.0 - 2.0;
            x[[r, j]] = v;
            z += truth[j] * v;
        }
        y.push(rng.next_f64() < 1.0 / (1.0 + (-z).exp()));
    }
    let alpha = 1.0;
    let linfa = LogisticRegression::default()
        .alpha(alpha)
        .max_iterations(2000)
        .gradient_tolerance(1e-10)
        .fit(&Dataset::new(x.clone(), Array1::from(y.clone())))
        .unwrap();
    // linfa's "positive" class is one of the two labels; orient its parameters to `true`.
    let sign = if linfa.labels().pos.class { 1.0 } else { -1.0 };
    let linfa_w: Vec<f64> = linfa.params().iter().map(|w| sign * w).collect();
    let linfa_b = sign * linfa.intercept();

    let dense: Vec<Vec<(u32, f32)>> = (0..n).map(|r| (0..d).map(|j| (j as u32, x[[r, j]] as f32)).collect()).collect();
    let rows = SparseRows::from_rows(dense.iter().map(|r| &r[..]));
    // Same objective on the f32-rounded design: compare on what both actually see.
    let x32 = x.mapv(|v| v as f32 as f64);
    let linfa32 = LogisticRegression::default()
        .alpha(alpha)
        .max_iterations(2000)
        .gradient_tolerance(1e-10)
        .fit(&Dataset::new(x32.clone(), Array1::from(y.clone())))
        .unwrap();
    let linfa32_w: Vec<f64> = linfa32.params().iter().map(|w| sign * w).collect();
    let ours = fit(&rows, &y, d, &LrConfig { alpha, grad_tol: 1e-9, max_iters: 1000, ..LrConfig::default() });
    for j in 0..d {
        assert!(
            (ours.weights[j] - linfa32_w[j]).abs() < 1e-3,
            "w[{j}]: ours {} linfa {}",
            ours.weights[j],
            linfa32_w[j]
        );
        assert!((linfa32_w[j] - linfa_w[j]).abs() < 1e-3, "f32 rounding moved w[{j}]");
    }
    assert!((ours.bias - sign * linfa32.intercept()).abs() < 1e-3 && (ours.bias - linfa_b).abs() < 1e-2);
    let p_linfa = linfa32.predict_probabilities(&x32);
    let z = logits(&rows, &ours.weights, ours.bias);
    for r in 0..n {
        let p_ours = 1.0 / (1.0 + (-z[r]).exp());
        let p_l = if sign > 0.0 { p_linfa[r] } else { 1.0 - p_linfa[r] };
        assert!((p_ours - p_l).abs() < 1e-4, "row {r}: ours {p_ours} linfa {p_l}");
    }
}
