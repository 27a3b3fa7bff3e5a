//! The training model (a differentiable Qwen2 in candle): every trainable tensor gets a
//! gradient — candle-transformers' Qwen2 gives one to 1 of 26 — the gradients agree with
//! finite differences, and on the real 0.5B model (loaded from its GGUF, dequantized) the
//! logits agree with candle's `quantized_qwen2`.

use std::fs::File;

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::quantized_qwen2::ModelWeights;
use flywheel_tests::real_model;
use native_trainer::train::gguf_import::load_tensors;
use native_trainer::train::{Qwen2, Qwen2Config};
use shared::{GgufModel, ModelText};

fn tiny_config() -> Qwen2Config {
    flywheel_tests::tiny_qwen2_config(false)
}

/// Deterministic token ids `(2, 9)` below `vocab`.
fn token_batch(vocab: usize) -> Tensor {
    let ids: Vec<u32> = (0..18u32).map(|i| (i * 37 + 11) % vocab as u32).collect();
    Tensor::from_vec(ids, (2, 9), &Device::Cpu).unwrap()
}

/// Next-token cross-entropy over every position (a stand-in for the DPO loss: same graph).
fn language_model_loss(model: &Qwen2, ids: &Tensor) -> Tensor {
    let logits = model.forward(ids).unwrap();
    let (batch, tokens, vocab) = logits.dims3().unwrap();
    let predictions = logits
        .narrow(1, 0, tokens - 1)
        .unwrap()
        .reshape((batch * (tokens - 1), vocab))
        .unwrap();
    let targets = ids.narrow(1, 1, tokens - 1).unwrap().flatten_all().unwrap();
    candle_nn::loss::cross_entropy(&predictions, &targets).unwrap()
}

#[test]
fn every_trainable_tensor_gets_a_gradient() {
    let config = tiny_config();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Qwen2::new(&config, &vb).unwrap();
    let loss = language_model_loss(&model, &token_batch(config.vocab_size));
    let grads = loss.backward().unwrap();
    let vars = varmap.data().lock().unwrap();
    // Embedding, final norm, output head; per layer two norms, q/k/v weights and biases,
    // o, gate, up, down.
    assert_eq!(vars.len(), 3 + 12 * config.num_hidden_layers);
    for (name, var) in vars.iter() {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name} has no gradient"));
        let magnitude: f32 = grad.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(magnitude > 0.0, "{name}: the gradient is zero");
    }
}

#[test]
fn gradients_agree_with_finite_differences() {
    let config = tiny_config();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let model = Qwen2::new(&config, &vb).unwrap();
    let ids = token_batch(config.vocab_size);
    let loss_value =
        |model: &Qwen2| -> f64 { language_model_loss(model, &ids).to_scalar().unwrap() };
    let grads = language_model_loss(&model, &ids).backward().unwrap();

    let vars: Vec<(String, Var)> = {
        let map = varmap.data().lock().unwrap();
        let mut vars: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    };
    let epsilon = 1e-5;
    let mut worst = 0f64;
    for (name, var) in &vars {
        let original = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let grad = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        // Three coordinates per tensor, spread over it.
        for k in 0..3 {
            let index = (k * 7919 + 13) % original.len();
            let at = |delta: f64| {
                let mut values = original.clone();
                values[index] += delta;
                let shaped =
                    Tensor::from_vec(values, var.as_tensor().shape(), &Device::Cpu).unwrap();
                var.set(&shaped).unwrap();
                loss_value(&model)
            };
            let numeric = (at(epsilon) - at(-epsilon)) / (2.0 * epsilon);
            let restored =
                Tensor::from_vec(original.clone(), var.as_tensor().shape(), &Device::Cpu).unwrap();
            var.set(&restored).unwrap();
            let analytic = grad[index];
            let scale = numeric.abs().max(analytic.abs()).max(1e-6);
            let relative = (numeric - analytic).abs() / scale;
            worst = worst.max(relative);
            assert!(
                relative < 1e-2,
                "{name}[{index}]: backward {analytic}, finite difference {numeric}"
            );
        }
    }
    eprintln!(
        "largest relative error over {} coordinates: {worst:.2e}",
        vars.len() * 3
    );
}

#[test]
fn the_real_model_from_its_gguf_matches_candles_logits() {
    let path = real_model();
    let mut file = File::open(&path).unwrap();
    let gguf = GgufModel::read(&mut file, &path.display().to_string()).unwrap();
    let text = ModelText::from_gguf(&gguf).unwrap();
    let config = Qwen2Config::from_hyperparameters(&gguf.hyperparameters);
    let tensors = load_tensors(&gguf, &mut file, DType::F32, &Device::Cpu).unwrap();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = Qwen2::new(&config, &vb).unwrap();

    let prompt = text
        .tokenizer
        .encode("The capital of France is Paris. The capital of Germany is")
        .unwrap();
    let ids = Tensor::new(prompt.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let ours: Vec<f32> = model
        .forward(&ids)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .get(prompt.len() - 1)
        .unwrap()
        .to_vec1()
        .unwrap();

    let mut candle_file = File::open(&path).unwrap();
    let content = Content::read(&mut candle_file).unwrap();
    let mut candle = ModelWeights::from_gguf(content, &mut candle_file, &Device::Cpu).unwrap();
    let theirs: Vec<f32> = candle
        .forward(&ids, 0)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap();

    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0
    };
    let difference = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!(
        "last position: max |Δlogit| {difference:.4}, top-1 ours {:?} candle {:?}",
        text.tokenizer.decode(&[argmax(&ours) as u32]).unwrap(),
        text.tokenizer.decode(&[argmax(&theirs) as u32]).unwrap()
    );
    assert_eq!(argmax(&ours), argmax(&theirs));
    assert!(difference < 1.0, "logits differ by {difference}");
}
