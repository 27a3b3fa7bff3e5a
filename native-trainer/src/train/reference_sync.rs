//! TR-DPO's reference updates (`sync_ref_model`, TRL's `SyncRefModelCallback`): after every
//! `ref_model_sync_steps`-th optimizer step the frozen reference moves towards the policy,
//! `reference ← alpha × policy + (1 − alpha) × reference` (`ref_model_mixup_alpha`), weight by
//! weight. The mix is computed in f32 and stored in the reference's dtype.

use std::collections::HashMap;

use candle_core::{DType, Result, Tensor, Var};

/// Mixes `policy`'s variables into the `reference` weights of the same names, in place (one
/// weight at a time, so at most one extra weight is held).
pub fn mix_into_reference(
    reference: &mut HashMap<String, Tensor>,
    policy: &[(String, Var)],
    alpha: f64,
) -> Result<()> {
    for (name, var) in policy {
        let Some(old) = reference.remove(name) else {
            candle_core::bail!("sync_ref_model: the reference has no weight `{name}`");
        };
        let dtype = old.dtype();
        let mixed = ((old.to_dtype(DType::F32)? * (1.0 - alpha))?
            + (var.as_tensor().to_dtype(DType::F32)? * alpha)?)?;
        reference.insert(name.clone(), mixed.to_dtype(dtype)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn the_reference_moves_alpha_of_the_way_to_the_policy() {
        let device = Device::Cpu;
        let mut reference = HashMap::from([(
            "w".to_string(),
            Tensor::new(&[1f32, -2.0, 4.0], &device).unwrap(),
        )]);
        let policy = vec![(
            "w".to_string(),
            Var::new(&[3f32, 2.0, 4.0], &device).unwrap(),
        )];
        mix_into_reference(&mut reference, &policy, 0.25).unwrap();
        assert_eq!(
            reference["w"].to_vec1::<f32>().unwrap(),
            vec![1.5, -1.0, 4.0]
        );
        // alpha = 1 copies the policy; alpha = 0 keeps the reference.
        mix_into_reference(&mut reference, &policy, 0.0).unwrap();
        assert_eq!(
            reference["w"].to_vec1::<f32>().unwrap(),
            vec![1.5, -1.0, 4.0]
        );
        mix_into_reference(&mut reference, &policy, 1.0).unwrap();
        assert_eq!(
            reference["w"].to_vec1::<f32>().unwrap(),
            vec![3.0, 2.0, 4.0]
        );
        let missing = vec![("v".to_string(), Var::new(&[0f32], &device).unwrap())];
        let error = mix_into_reference(&mut reference, &missing, 0.5).unwrap_err();
        assert!(error.to_string().contains("no weight `v`"), "{error}");
    }
}
