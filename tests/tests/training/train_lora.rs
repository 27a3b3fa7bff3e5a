//! LoRA on the training model: training starts exactly at the base model (B = 0), only the
//! adapters are trainable, switching them off gives the untouched reference model after an
//! update, and folding them into the weights gives the adapted model's logits.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use flywheel_tests::max_abs_difference as max_difference;
use native_trainer::train::{LoraConfig, Qwen2, Qwen2Config};

fn tiny_config() -> Qwen2Config {
    flywheel_tests::tiny_qwen2_config(true)
}

/// A randomly initialised base model's weights as plain (non-trainable) tensors.
fn base_weights(config: &Qwen2Config) -> HashMap<String, Tensor> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    Qwen2::new(config, &vb).unwrap();
    varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect()
}

#[test]
fn adapters_start_at_the_base_model_train_alone_and_merge() {
    let config = tiny_config();
    let base = VarBuilder::from_tensors(base_weights(&config), DType::F32, &Device::Cpu);
    let mut model = Qwen2::new(&config, &base).unwrap();
    let adapters = VarMap::new();
    let lora = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        lora_dropout: 0.0,
        target_modules: LoraConfig::MODULES.iter().map(|m| m.to_string()).collect(),
    };
    model
        .add_lora(
            &lora,
            &VarBuilder::from_varmap(&adapters, DType::F32, &Device::Cpu),
        )
        .unwrap();
    let ids = Tensor::from_vec(
        (0..14u32).map(|i| (i * 17 + 3) % 61).collect(),
        (2, 7),
        &Device::Cpu,
    )
    .unwrap();
    let reference = model.forward_reference(&ids).unwrap();
    assert_eq!(
        max_difference(&model.forward(&ids).unwrap(), &reference),
        0.0,
        "with B = 0 the adapted model must equal the base model"
    );

    // Only adapters are variables; B gets the gradient at the start (A's is zero while B is).
    let logits = model.forward(&ids).unwrap();
    let loss = logits.sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    let vars = adapters.data().lock().unwrap().clone();
    assert_eq!(vars.len(), config.num_hidden_layers * 7 * 2);
    for (name, var) in &vars {
        let grad = grads.get(var.as_tensor()).unwrap();
        let magnitude: f32 = grad.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        if name.ends_with("lora_B.weight") {
            assert!(magnitude > 0.0, "{name}: no gradient");
        }
    }

    // One gradient step on every B moves the adapted model and leaves the reference alone.
    for (name, var) in &vars {
        if name.ends_with("lora_B.weight") {
            let grad = grads.get(var.as_tensor()).unwrap();
            let stepped = (var.as_tensor() - (grad * 10.0).unwrap()).unwrap();
            var.set(&stepped).unwrap();
        }
    }
    let adapted = model.forward(&ids).unwrap();
    assert!(
        max_difference(&adapted, &reference) > 1e-4,
        "the step changed nothing"
    );
    assert_eq!(
        max_difference(&model.forward_reference(&ids).unwrap(), &reference),
        0.0,
        "the reference model moved"
    );

    // Folding the adapters into the weights reproduces the adapted model.
    let merged: HashMap<String, Tensor> = model.merged_weights().unwrap().into_iter().collect();
    let merged_model = Qwen2::new(
        &config,
        &VarBuilder::from_tensors(merged, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let difference = max_difference(&merged_model.forward(&ids).unwrap(), &adapted);
    assert!(difference < 1e-5, "merged weights differ by {difference}");
}

#[test]
fn lora_settings_are_checked_by_name() {
    let bad_module = LoraConfig {
        target_modules: vec!["qkv_proj".into()],
        ..LoraConfig::default()
    };
    let error = bad_module.validate().unwrap_err();
    assert!(
        error.contains("qkv_proj") && error.contains("target_modules"),
        "{error}"
    );
    let zero_rank = LoraConfig {
        r: 0,
        ..LoraConfig::default()
    };
    assert!(zero_rank.validate().unwrap_err().contains(" r "));
}
