//! The WGSL of a matmul pipeline, put together and partly generated here: the constants of
//! the pipeline (rows, token tile, pairing, input norm), the shared bindings, the layout's
//! kernel, the block type's file, and the dot product that spells out a block's groups for
//! every row and token an invocation handles (the tiled kernel has its own).

use super::gpu_block_layout::GpuBlockLayout;
use super::matmul_plan::MatmulLayout;
use crate::gguf::block_type::BlockType;

/// The most workgroups one dispatch dimension may have; more row groups continue in grid z
/// (the kernels' `ROW_GROUPS_PER_Z`).
pub(super) const MAX_GROUPS_PER_DIMENSION: u32 = 65_535;

/// The WGSL of one pipeline: ROWS, TOKEN_TILE, ROW_GROUPS_PER_Z, PAIRED, NORMALIZED_INPUT
/// (and LANES, or the tiled kernel's TILE_TOKENS and `tile_t`), the shared declarations, the
/// layout's kernel, the block type's file and the generated dot product (the tiled kernel
/// has its own).
pub(super) fn kernel_source(
    block_type: BlockType,
    layout: MatmulLayout,
    tile: u32,
    row_pairs: bool,
    normalizes: bool,
    subgroup_sums: bool,
) -> String {
    let rows = layout.rows_per_group(row_pairs) as u32;
    let mut constants = format!(
        "const ROWS: u32 = {rows}u;\nconst TOKEN_TILE: u32 = {tile}u;\nconst TILE_TOKENS: u32 = {tile}u;\n\
         const ROW_GROUPS_PER_Z: u32 = {MAX_GROUPS_PER_DIMENSION}u;\nconst PAIRED: bool = {row_pairs};\n\
         const NORMALIZED_INPUT: bool = {normalizes};\n"
    );
    let (kernel, dot) = match layout {
        MatmulLayout::Tiled { f16 } => {
            let tile_type = if f16 { "vec4<f16>" } else { "vec4<f32>" };
            let enable = if f16 { "enable f16;\n" } else { "" };
            constants = format!("{enable}{constants}alias tile_t = {tile_type};\n");
            (include_str!("kernels/matmul_tiled.wgsl"), String::new())
        }
        MatmulLayout::RowsPerInvocation(_) => (
            include_str!("kernels/matmul_rows.wgsl"),
            block_dot_source(block_type, rows, tile),
        ),
        MatmulLayout::LanesPerRow(lanes) => {
            constants.push_str(&format!("const LANES: u32 = {lanes}u;\n"));
            // Naga takes subgroup built-ins without WGSL's `enable subgroups;` (which it
            // does not parse yet) once the device has the feature.
            let kernel = if subgroup_sums {
                include_str!("kernels/matmul_lanes_subgroup.wgsl")
            } else {
                include_str!("kernels/matmul_lanes.wgsl")
            };
            (kernel, run_dot_source(block_type, rows, tile))
        }
    };
    format!(
        "{constants}{}\n{kernel}\n{}\n{dot}",
        include_str!("kernels/matmul_bindings.wgsl"),
        block_type.block_kernel_source(),
    )
}

/// `block_dot(block, x4, acc)`: adds block `block` of each of the invocation's rows times
/// the tile's x to `acc[row * TOKEN_TILE + token]`: a loop over the block's runs (K-quant
/// sub-blocks), each run's groups of four weights spelled out for every row and token.
fn block_dot_source(block_type: BlockType, rows: u32, tile: u32) -> String {
    let mut s = format!(
        "fn block_dot(block: u32, x4: u32, acc: ptr<function, array<vec4<f32>, {}>>) {{\n",
        rows * tile
    );
    push_sums(&mut s, rows, tile);
    // Decode kernels spell out the runs too (fastest); batched kernels loop over them to keep
    // the shader small (compile time grows with the unrolled rows × tokens).
    if tile == 1 {
        for run in 0..block_type.sub_blocks() {
            push_run(&mut s, block_type, rows, tile, &format!("{run}u"));
        }
    } else {
        s.push_str("    for (var sub = 0u; sub < SUB_BLOCKS; sub++) {\n");
        push_run(&mut s, block_type, rows, tile, "sub");
        s.push_str("    }\n");
    }
    push_sums_into_acc(&mut s, rows, tile);
    s.push_str("}\n");
    s
}

/// `run_dot(block, run, x4, acc)`: adds run `run` of block `block` of each of the group's
/// rows times the tile's x to `acc[row * TOKEN_TILE + token]`.
fn run_dot_source(block_type: BlockType, rows: u32, tile: u32) -> String {
    let mut s = format!(
        "fn run_dot(block: u32, run: u32, x4: u32, acc: ptr<function, array<vec4<f32>, {}>>) {{\n",
        rows * tile
    );
    push_sums(&mut s, rows, tile);
    push_run(&mut s, block_type, rows, tile, "run");
    push_sums_into_acc(&mut s, rows, tile);
    s.push_str("}\n");
    s
}

/// `var s{row}_{token}`: the sums of one block or run, kept in registers.
fn push_sums(s: &mut String, rows: u32, tile: u32) {
    use std::fmt::Write;
    for r in 0..rows {
        for t in 0..tile {
            let _ = writeln!(s, "    var s{r}_{t} = vec4<f32>(0.0);");
        }
    }
}

/// Adds the sums to `acc[row * TOKEN_TILE + token]`.
fn push_sums_into_acc(s: &mut String, rows: u32, tile: u32) {
    use std::fmt::Write;
    for r in 0..rows {
        for t in 0..tile {
            let _ = writeln!(s, "    (*acc)[{}] += s{r}_{t};", r * tile + t);
        }
    }
}

/// One run (`run`: a WGSL expression) of a block for every row and token: its groups of four
/// weights spelled out, each weight dequantized once and each x loaded once, added to the
/// sums.
fn push_run(s: &mut String, block_type: BlockType, rows: u32, tile: u32, run: &str) {
    use std::fmt::Write;
    let groups = block_type.block_elements() / 4 / block_type.sub_blocks();
    s.push_str("    {\n");
    for r in 0..rows {
        let _ = writeln!(
            s,
            "        let b{r} = load_sub(row_base[{r}] + block, {run});"
        );
    }
    let _ = writeln!(s, "        let xs = x4 + {run} * {groups}u;");
    for g in 0..groups {
        s.push_str("        {\n");
        for r in 0..rows {
            let _ = writeln!(s, "            let w{r} = group_weights(b{r}, {g}u);");
        }
        for t in 0..tile {
            let _ = writeln!(s, "            let x{t} = token_x({t}u, xs + {g}u);");
            for r in 0..rows {
                let _ = writeln!(s, "            s{r}_{t} += w{r} * x{t};");
            }
        }
        s.push_str("        }\n");
    }
    s.push_str("    }\n");
}
