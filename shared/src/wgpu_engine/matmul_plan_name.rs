//! Matmul plans written as text, for benchmarks and kernel checks that take a plan by name:
//! `cpu`, `browser-cpu`, `gpu`, or `DECODE/BATCHEDxTILE` with DECODE and BATCHED each
//! `rows:N` (rows per invocation), `lanes:N` (invocations per row) or, for BATCHED, `tiled` /
//! `tiled-f16` (64-row workgroup tiles in f32 / f16), e.g. `lanes:16/tiled-f16x32`; any of
//! them with `+subgroups` for lane sums by subgroup shuffles. Plans given by layouts fold
//! each RMSNorm into the product after it wherever their layouts and tile can.

use std::str::FromStr;

use super::matmul_plan::{MatmulLayout, MatmulPlan};

/// A plan name that does not follow the grammar above, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("matmul plan {name:?}: {reason}")]
pub struct PlanNameError {
    pub name: String,
    pub reason: String,
}

impl FromStr for MatmulPlan {
    type Err = PlanNameError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let error = |reason: &str| PlanNameError {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        let (layouts, subgroup_sums) = match name.strip_suffix("+subgroups") {
            Some(layouts) => (layouts, true),
            None => (name, false),
        };
        let plan = match layouts {
            "cpu" => Self::CPU_DRIVER,
            "browser-cpu" => Self::BROWSER_CPU_FALLBACK,
            "gpu" => Self::GPU,
            _ => {
                let expected = "expected cpu, browser-cpu, gpu or DECODE/BATCHEDxTILE";
                let (decode, batched) = layouts.split_once('/').ok_or_else(|| error(expected))?;
                let (batched, tile) = batched.split_once('x').ok_or_else(|| error(expected))?;
                let decode = parse_layout(decode).map_err(|reason| error(&reason))?;
                let batched = parse_layout(batched).map_err(|reason| error(&reason))?;
                let batched_tile: u32 = tile
                    .parse()
                    .map_err(|_| error(&format!("token tile {tile:?} is not a number")))?;
                if matches!(decode, MatmulLayout::Tiled { .. }) {
                    return Err(error(
                        "one-token steps have no token tile: DECODE is rows or lanes",
                    ));
                }
                let rows = |layout| matches!(layout, MatmulLayout::RowsPerInvocation(_));
                Self {
                    decode,
                    batched,
                    batched_tile,
                    normalize_inputs: !rows(decode)
                        && !rows(batched)
                        && 64_u32.is_multiple_of(batched_tile),
                    subgroup_sums,
                }
            }
        };
        Ok(Self {
            subgroup_sums,
            ..plan
        })
    }
}

fn parse_layout(text: &str) -> Result<MatmulLayout, String> {
    let number = |n: &str| {
        n.parse::<usize>()
            .map_err(|_| format!("layout {text:?}: {n:?} is not a number"))
    };
    Ok(match text.split_once(':') {
        Some(("rows", n)) => MatmulLayout::RowsPerInvocation(number(n)?),
        Some(("lanes", n)) => MatmulLayout::LanesPerRow(number(n)?),
        None if text == "tiled" => MatmulLayout::Tiled { f16: false },
        None if text == "tiled-f16" => MatmulLayout::Tiled { f16: true },
        _ => {
            return Err(format!(
                "layout {text:?}: expected rows:N, lanes:N, tiled or tiled-f16"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_plans_and_layouts_parse() {
        assert_eq!("gpu".parse(), Ok(MatmulPlan::GPU));
        assert_eq!("cpu".parse(), Ok(MatmulPlan::CPU_DRIVER));
        assert_eq!("browser-cpu".parse(), Ok(MatmulPlan::BROWSER_CPU_FALLBACK));
        assert_eq!("lanes:16/tiledx32".parse(), Ok(MatmulPlan::GPU));
        assert_eq!("rows:8/rows:8x4".parse(), Ok(MatmulPlan::CPU_DRIVER));
        let plan: MatmulPlan = "lanes:8/tiled-f16x8+subgroups".parse().unwrap();
        assert_eq!(plan.decode, MatmulLayout::LanesPerRow(8));
        assert_eq!(plan.batched, MatmulLayout::Tiled { f16: true });
        assert_eq!(plan.batched_tile, 8);
        assert!(plan.normalize_inputs && plan.subgroup_sums);
        // A 12-token tile does not divide 64: separate norms.
        let plan: MatmulPlan = "lanes:16/tiledx12".parse().unwrap();
        assert!(!plan.normalize_inputs);
    }

    #[test]
    fn malformed_names_say_what_is_wrong() {
        for (name, says) in [
            ("fast", "expected cpu, browser-cpu, gpu"),
            ("lanes:16/tiled", "expected cpu, browser-cpu, gpu"),
            ("lanes:x/tiledx32", "\"x\" is not a number"),
            ("tiled/tiledx32", "one-token steps have no token tile"),
            ("lanes:16/tiledxmany", "token tile \"many\""),
            ("warp:4/tiledx32", "expected rows:N, lanes:N"),
        ] {
            let error = name.parse::<MatmulPlan>().unwrap_err().to_string();
            assert!(
                error.contains(name) && error.contains(says),
                "{name}: {error}"
            );
        }
    }
}
