//! Training data as TRL reads it: the three row formats (with TRL's `extract_prompt` rules for
//! implicit prompts, including its own docstring example), field-level errors, truncation of
//! batches as TRL's collator does it, and the loss terms DPOConfig adds (`rpo_alpha`, IPO's
//! per-token averaging) checked against their formulas.

use candle_core::{Device, Tensor};
use native_trainer::train::dpo_batch::{DpoBatch, Truncation, TruncationMode, dpo_step};
use native_trainer::train::dpo_loss::{
    DpoLossConfig, LossMix, LossType, log_sigmoid, sequence_logps,
};
use native_trainer::train::pair_tokens::PairTokens;
use native_trainer::train::preference_file::parse_row;
use native_trainer::train::{Qwen2, Qwen2Config};
use serde_json::json;
use shared::{ChatMessage, TrlRow};

#[test]
fn rows_in_every_trl_format_parse_and_implicit_prompts_split_as_trl_does() {
    assert_eq!(
        parse_row(&json!({"prompt": "Hi", "chosen": " yes", "rejected": " no", "id": 7})).unwrap(),
        TrlRow::Standard {
            prompt: "Hi".into(),
            chosen: " yes".into(),
            rejected: " no".into()
        }
    );
    // TRL's extract_prompt docstring example.
    assert_eq!(
        parse_row(&json!({
            "chosen": [{"role": "user", "content": "What color is the sky?"}, {"role": "assistant", "content": "It is blue."}],
            "rejected": [{"role": "user", "content": "What color is the sky?"}, {"role": "assistant", "content": "It is green."}],
        }))
        .unwrap(),
        TrlRow::Conversational {
            prompt: vec![ChatMessage::user("What color is the sky?")],
            chosen: vec![ChatMessage::assistant("It is blue.")],
            rejected: vec![ChatMessage::assistant("It is green.")],
        }
    );
    // Strings split where they differ, the space staying with the answers.
    assert_eq!(
        parse_row(&json!({"chosen": "The sky is blue.", "rejected": "The sky is green."})).unwrap(),
        TrlRow::Standard {
            prompt: "The sky is".into(),
            chosen: " blue.".into(),
            rejected: " green.".into()
        }
    );
    // Characters, not bytes: a shared multi-byte prefix stays whole.
    assert_eq!(
        parse_row(&json!({"chosen": "Ça va bien", "rejected": "Ça va mal"})).unwrap(),
        TrlRow::Standard {
            prompt: "Ça va".into(),
            chosen: " bien".into(),
            rejected: " mal".into()
        }
    );
}

#[test]
fn malformed_rows_name_the_field_and_the_reason() {
    for (row, field, reason) in [
        (json!([1, 2]), "(row)", "expected a JSON object, got a list"),
        (json!({"prompt": "q", "rejected": "r"}), "chosen", "missing"),
        (
            json!({"prompt": "q", "chosen": "c", "rejected": null}),
            "rejected",
            "missing",
        ),
        (
            json!({"prompt": "q", "chosen": true, "rejected": "r"}),
            "chosen",
            "got a boolean",
        ),
        (
            json!({"prompt": [{"role": "user", "content": "q"}], "chosen": "c", "rejected": "r"}),
            "chosen",
            "is a string, but `prompt` is a message list",
        ),
        (
            json!({"prompt": [{"role": "robot", "content": "q"}], "chosen": [], "rejected": []}),
            "prompt[0]",
            "unknown variant `robot`",
        ),
        (
            json!({"prompt": [{"role": "user"}], "chosen": [], "rejected": []}),
            "prompt[0]",
            "missing field `content`",
        ),
        (
            json!({"prompt": [], "chosen": [], "rejected": []}),
            "prompt",
            "the message list is empty",
        ),
        (
            json!({"chosen": "text", "rejected": [{"role": "assistant", "content": "x"}]}),
            "rejected",
            "must both be strings or both message lists",
        ),
    ] {
        let error = parse_row(&row).unwrap_err();
        assert_eq!(error.field, field, "{row}: {error}");
        assert!(error.reason.contains(reason), "{row}: {error}");
    }
}

fn pair(prompt: &[u32], chosen: &[u32], rejected: &[u32]) -> PairTokens {
    PairTokens {
        prompt_ids: prompt.to_vec(),
        chosen_ids: chosen.to_vec(),
        rejected_ids: rejected.to_vec(),
    }
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec2()
        .unwrap()
}

#[test]
fn batches_truncate_each_sequence_as_trls_collator_does() {
    let pairs = [pair(&[1, 2, 3], &[4, 5], &[6, 7, 8, 9])];
    let keep_start = DpoBatch::collate(
        &pairs,
        0,
        Some(Truncation {
            max_length: 5,
            mode: TruncationMode::KeepStart,
        }),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        rows(&keep_start.input_ids),
        vec![vec![1., 2., 3., 4., 5.], vec![1., 2., 3., 6., 7.]]
    );
    assert_eq!(
        rows(&keep_start.completion_mask),
        vec![vec![0., 0., 0., 1., 1.], vec![0., 0., 0., 1., 1.]]
    );
    let keep_end = DpoBatch::collate(
        &pairs,
        0,
        Some(Truncation {
            max_length: 4,
            mode: TruncationMode::KeepEnd,
        }),
        &Device::Cpu,
    )
    .unwrap();
    // Each sequence keeps its own last 4 tokens; the shorter one is right-padded.
    assert_eq!(
        rows(&keep_end.input_ids),
        vec![vec![2., 3., 4., 5.], vec![6., 7., 8., 9.]]
    );
    assert_eq!(
        rows(&keep_end.completion_mask),
        vec![vec![0., 0., 1., 1.], vec![1., 1., 1., 1.]]
    );
    let untouched = DpoBatch::collate(&pairs, 0, None, &Device::Cpu).unwrap();
    assert_eq!(untouched.input_ids.dims(), &[2, 7]);
}

fn tiny_model() -> Qwen2 {
    let config = Qwen2Config {
        vocab_size: 40,
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        max_position_embeddings: 64,
    };
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
    Qwen2::new(&config, &vb).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    f64::from(t.to_scalar::<f32>().unwrap())
}

#[test]
fn rpo_adds_the_chosen_token_nll_and_ipo_averages_per_token() {
    let model = tiny_model();
    let batch = DpoBatch::collate(
        &[
            pair(&[1, 2], &[3, 4, 5], &[6]),
            pair(&[7], &[8, 9], &[10, 11, 12, 13]),
        ],
        0,
        None,
        &Device::Cpu,
    )
    .unwrap();
    let logps = sequence_logps(
        &model.forward(&batch.input_ids).unwrap(),
        &batch.input_ids,
        &batch.completion_mask,
    )
    .unwrap();
    let policy: Vec<f32> = logps.to_vec1().unwrap();
    // A reference that differs from the policy, so the losses are not at their start value.
    let reference_values = vec![-30.0f32, -9.0, -18.0, -40.0];
    let reference = Tensor::new(reference_values.as_slice(), &Device::Cpu).unwrap();
    let lengths = [3.0, 2.0, 1.0, 4.0];
    let beta = 0.2;

    let sigmoid = DpoLossConfig {
        beta,
        ..DpoLossConfig::default()
    };
    let (plain, _) = dpo_step(&model, &batch, &reference, &sigmoid).unwrap();
    let alpha = 0.7;
    let (with_rpo, metrics) = dpo_step(
        &model,
        &batch,
        &reference,
        &DpoLossConfig {
            rpo_alpha: Some(alpha),
            ..sigmoid
        },
    )
    .unwrap();
    let nll = -(f64::from(policy[0]) + f64::from(policy[1])) / (lengths[0] + lengths[1]);
    assert!((metrics.nll_loss.unwrap() - nll).abs() < 1e-5);
    assert!((scalar(&with_rpo) - scalar(&plain) - alpha * nll).abs() < 1e-5);

    let (ipo, ipo_metrics) = dpo_step(
        &model,
        &batch,
        &reference,
        &DpoLossConfig {
            losses: LossMix::one(LossType::Ipo),
            beta,
            ..DpoLossConfig::default()
        },
    )
    .unwrap();
    let expected: f64 = (0..2)
        .map(|i| {
            let (c, r) = (i, i + 2);
            let h = (f64::from(policy[c]) - f64::from(reference_values[c])) / lengths[c]
                - (f64::from(policy[r]) - f64::from(reference_values[r])) / lengths[r];
            (h - 1.0 / (2.0 * beta)).powi(2)
        })
        .sum::<f64>()
        / 2.0;
    assert!(
        (scalar(&ipo) - expected).abs() < 1e-4 * expected,
        "IPO loss {} expected {expected}",
        scalar(&ipo)
    );
    // Rewards stay β × the summed log-ratio, as TRL logs them.
    let reward = beta
        * (f64::from(policy[0]) - f64::from(reference_values[0]) + f64::from(policy[1])
            - f64::from(reference_values[1]))
        / 2.0;
    assert!((ipo_metrics.rewards_chosen - reward).abs() < 1e-4);
    // The sigmoid loss itself, for reference: −log σ(β h) averaged.
    let h: Vec<f64> = (0..2)
        .map(|i| {
            f64::from(policy[i]) - f64::from(reference_values[i]) - f64::from(policy[i + 2])
                + f64::from(reference_values[i + 2])
        })
        .collect();
    let sig = Tensor::new(&[beta * h[0], beta * h[1]], &Device::Cpu).unwrap();
    let expected_sigmoid = -log_sigmoid(&sig)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((scalar(&plain) - expected_sigmoid).abs() < 1e-5);
}

#[test]
fn scoring_only_completion_positions_equals_scoring_every_position() {
    let model = tiny_model();
    let batch = DpoBatch::collate(
        &[
            pair(&[1, 2, 3, 4], &[5, 6, 7], &[8]),
            pair(&[9], &[10, 11], &[12, 13, 14, 15, 16]),
        ],
        0,
        None,
        &Device::Cpu,
    )
    .unwrap();
    let full = sequence_logps(
        &model.forward(&batch.input_ids).unwrap(),
        &batch.input_ids,
        &batch.completion_mask,
    )
    .unwrap();
    let scored = batch.score(&model, true).unwrap();
    let (full, scored): (Vec<f32>, Vec<f32>) =
        (full.to_vec1().unwrap(), scored.logps.to_vec1().unwrap());
    for (a, b) in full.iter().zip(&scored) {
        assert!(
            (a - b).abs() < 1e-5 * a.abs().max(1.0),
            "{full:?} vs {scored:?}"
        );
    }
    // The gradient reaches the weights through the selected positions.
    let (loss, _) = dpo_step(
        &model,
        &batch,
        &Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap(),
        &DpoLossConfig::default(),
    )
    .unwrap();
    assert!(scalar(&loss).is_finite());
}

/// WPO's weights, `exp(mean over a sequence's tokens of log p(t) − log Σ_v p(v)²)`, are the
/// same from the sliced vocabulary pass (a few tokens of the vocabulary per slice) as from
/// the whole logits, and equal the formula on the full softmax.
#[test]
fn wpo_weights_are_the_same_sliced_or_whole_and_follow_the_formula() {
    use native_trainer::train::fused_ops::FusedOps;
    let mut model = tiny_model();
    let batch = DpoBatch::collate(
        &[
            pair(&[1, 2, 3], &[5, 6, 7], &[8]),
            pair(&[9], &[10, 11], &[12, 13, 14, 15]),
        ],
        0,
        None,
        &Device::Cpu,
    )
    .unwrap()
    .weigh_by_probability();
    let sliced = FusedOps {
        chunk_bytes: 8 * 4 * 7,
        ..FusedOps::ALL
    };
    let weights = |model: &Qwen2| -> Vec<f32> {
        batch
            .score(model, true)
            .unwrap()
            .probability_weights
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    model.set_fused_ops(sliced);
    let from_slices = weights(&model);
    model.set_fused_ops(FusedOps {
        vocabulary: false,
        ..sliced
    });
    let from_whole = weights(&model);
    // The formula, from each sequence's full softmax.
    let logits = model.forward(&batch.input_ids).unwrap();
    let probs = candle_nn::ops::softmax_last_dim(&logits).unwrap();
    let probs: Vec<Vec<Vec<f32>>> = probs.to_vec3().unwrap();
    let ids: Vec<Vec<u32>> = batch.input_ids.to_vec2().unwrap();
    let mask: Vec<Vec<f32>> = batch.completion_mask.to_vec2().unwrap();
    for row in 0..4 {
        let (mut total, mut count) = (0f64, 0f64);
        for position in 1..ids[row].len() {
            if mask[row][position] > 0.0 {
                let p = &probs[row][position - 1];
                let squares: f64 = p.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                total += f64::from(p[ids[row][position] as usize]).ln() - squares.ln();
                count += 1.0;
            }
        }
        let expected = (total / count).exp();
        for (what, ours) in [("sliced", from_slices[row]), ("whole", from_whole[row])] {
            assert!(
                (f64::from(ours) - expected).abs() < 1e-4 * expected,
                "row {row} {what}: {ours} vs {expected}"
            );
        }
    }
    // Without the flag, no weights are computed.
    let plain = DpoBatch::collate(&[pair(&[1], &[2], &[3])], 0, None, &Device::Cpu).unwrap();
    assert!(
        plain
            .score(&model, true)
            .unwrap()
            .probability_weights
            .is_none()
    );
}

#[test]
fn frozen_weights_pass_the_exact_input_gradient_and_get_none() {
    use native_trainer::train::linear_product::linear_product;
    let device = Device::Cpu;
    let x = candle_core::Var::randn(0f32, 1.0, (2, 3, 5), &device).unwrap();
    let weight = Tensor::randn(0f32, 1.0, (4, 5), &device).unwrap();
    let upstream = Tensor::randn(0f32, 1.0, (2, 3, 4), &device).unwrap();
    let y = linear_product(x.as_tensor(), &weight).unwrap();
    let expected_y = x
        .as_tensor()
        .broadcast_matmul(&weight.t().unwrap())
        .unwrap();
    let difference = flywheel_tests::max_abs_difference;
    assert!(difference(&y, &expected_y) < 1e-5);
    let grads = (y * &upstream)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let grad_x = grads.get(x.as_tensor()).expect("x gets a gradient");
    let expected = upstream.broadcast_matmul(&weight).unwrap();
    assert!(difference(grad_x, &expected) < 1e-5);
    assert!(
        grads.get(&weight).is_none(),
        "the frozen weight must get no gradient"
    );
}

#[test]
fn parquet_files_as_hugging_face_ships_them_read_like_their_json_lines() {
    use native_trainer::train::preference_file::read_preference_file;
    let dir = flywheel_tests::workspace_root().join("tests/fixtures/preferences");
    let jsonl = read_preference_file(&dir.join("uppercase_eval.jsonl"), false).unwrap();
    let parquet = read_preference_file(&dir.join("uppercase_eval.parquet"), false).unwrap();
    assert_eq!(parquet.rows, jsonl.rows);
    assert_eq!(
        parquet.line_numbers,
        (1..=jsonl.rows.len()).collect::<Vec<_>>()
    );

    let standard =
        read_preference_file(&dir.join("uppercase_eval_standard.parquet"), false).unwrap();
    assert_eq!(standard.rows.len(), jsonl.rows.len());
    let TrlRow::Standard {
        prompt,
        chosen,
        rejected,
    } = &standard.rows[0]
    else {
        panic!("expected standard rows, got {:?}", standard.rows[0]);
    };
    assert!(
        prompt.starts_with("<|im_start|>user\nName a dessert."),
        "{prompt}"
    );
    assert_eq!((chosen.as_str(), rejected.as_str()), ("CAKE.", "cake."));

    let broken = tempfile::tempdir().unwrap();
    let path = broken.path().join("votes.parquet");
    std::fs::write(&path, b"PAR1 this is not parquet").unwrap();
    let error = format!("{:#}", read_preference_file(&path, false).unwrap_err());
    assert!(
        error.contains("votes.parquet: not a readable Parquet file"),
        "{error}"
    );
}

#[test]
fn a_prompt_computed_once_for_both_answers_scores_like_each_sequence_on_its_own() {
    let model = tiny_model();
    // Two pairs share a prompt, one prompt is empty, completions of uneven lengths.
    let pairs = [
        pair(&[1, 2, 3, 4], &[5, 6, 7], &[8]),
        pair(&[1, 2, 3, 4], &[9, 10], &[11, 12, 13, 14]),
        pair(&[15], &[16, 17], &[18, 19, 20]),
        pair(&[], &[21, 22, 23], &[24, 25]),
    ];
    for truncation in [
        None,
        Some(Truncation {
            max_length: 5,
            mode: TruncationMode::KeepStart,
        }),
        Some(Truncation {
            max_length: 5,
            mode: TruncationMode::KeepEnd,
        }),
    ] {
        let batch = DpoBatch::collate(&pairs, 0, truncation, &Device::Cpu).unwrap();
        let full = sequence_logps(
            &model.forward(&batch.input_ids).unwrap(),
            &batch.input_ids,
            &batch.completion_mask,
        )
        .unwrap();
        let shared = batch.score(&model, true).unwrap().logps;
        let (full, shared): (Vec<f32>, Vec<f32>) =
            (full.to_vec1().unwrap(), shared.to_vec1().unwrap());
        for (a, b) in full.iter().zip(&shared) {
            assert!(
                (a - b).abs() < 1e-5 * a.abs().max(1.0),
                "{truncation:?}: each on its own {full:?}, shared prompts {shared:?}"
            );
        }
    }
}
