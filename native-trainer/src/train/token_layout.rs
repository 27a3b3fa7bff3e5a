//! How a batch's tokens are laid out for one forward pass of the training model: *primary*
//! rows attend to themselves causally, and optional *continuation* rows each continue one
//! primary row — they see the first `parent_len` tokens of their parent, then themselves
//! causally, with positions carrying on from there. DPO's chosen and rejected answers
//! continue one shared prompt, so each prompt goes through the model once instead of twice;
//! the result equals running every full sequence on its own.
//!
//! Hidden states are one flat `(tokens, hidden)` matrix: every primary row's `width` slots
//! (row-major, right-padded), then every continuation row's.

use candle_core::{DType, Device, Result, Tensor};

pub struct TokenLayout {
    /// `(rows, width)` token ids, right-padded.
    pub primary_ids: Tensor,
    pub continuation: Option<Continuation>,
}

/// One row of a layout as attention reads it: its queries are its own slots, its keys the
/// slots of its parent's prefix (if any) followed by its own, causally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowSpan {
    /// The row's first slot in the flat `(tokens, hidden)` matrix.
    pub start: usize,
    /// Its slots, padding included.
    pub len: usize,
    /// For a continuation row: its parent's index among the rows and how many of the
    /// parent's leading slots it sees.
    pub parent: Option<(usize, usize)>,
}

impl RowSpan {
    /// How many of the parent's slots come before this row's own keys.
    pub fn prefix_len(&self) -> usize {
        self.parent.map_or(0, |(_, seen)| seen)
    }
}

pub struct Continuation {
    /// `(rows, width)` token ids, right-padded.
    pub ids: Tensor,
    /// The primary row each continuation row continues.
    pub parents: Vec<usize>,
    /// How many leading tokens of its parent each row sees (the parent's real length).
    pub parent_lens: Vec<usize>,
}

impl TokenLayout {
    /// Every row on its own (no continuations).
    pub fn plain(input_ids: &Tensor) -> Self {
        Self {
            primary_ids: input_ids.clone(),
            continuation: None,
        }
    }

    pub fn primary_dims(&self) -> Result<(usize, usize)> {
        self.primary_ids.dims2()
    }

    pub fn continuation_dims(&self) -> Result<Option<(usize, usize)>> {
        self.continuation
            .as_ref()
            .map(|c| c.ids.dims2())
            .transpose()
    }

    /// Every row, primary rows first, in slot order.
    pub fn spans(&self) -> Result<Vec<RowSpan>> {
        let (rows, width) = self.primary_dims()?;
        let mut spans: Vec<RowSpan> = (0..rows)
            .map(|row| RowSpan {
                start: row * width,
                len: width,
                parent: None,
            })
            .collect();
        if let Some(c) = &self.continuation {
            let (_, continuation_width) = c.ids.dims2()?;
            for (row, (&parent, &seen)) in c.parents.iter().zip(&c.parent_lens).enumerate() {
                spans.push(RowSpan {
                    start: rows * width + row * continuation_width,
                    len: continuation_width,
                    parent: Some((parent, seen)),
                });
            }
        }
        Ok(spans)
    }

    /// Every token slot's id, primary rows first: `(tokens,)`.
    pub fn flat_ids(&self) -> Result<Tensor> {
        let primary = self.primary_ids.flatten_all()?;
        match &self.continuation {
            Some(c) => Tensor::cat(&[primary, c.ids.flatten_all()?], 0),
            None => Ok(primary),
        }
    }

    /// Every token slot's position (what RoPE rotates by): `(tokens,)`.
    pub fn positions(&self, device: &Device) -> Result<Tensor> {
        let (rows, width) = self.primary_dims()?;
        let mut positions: Vec<u32> = (0..rows).flat_map(|_| 0..width as u32).collect();
        if let Some(c) = &self.continuation {
            let (_, continuation_width) = c.ids.dims2()?;
            for &start in &c.parent_lens {
                positions.extend((0..continuation_width).map(|j| (start + j) as u32));
            }
        }
        let count = positions.len();
        Tensor::from_vec(positions, count, device)
    }

    /// The parent row of every continuation row, `(continuation rows,)`.
    pub fn parent_index(&self, device: &Device) -> Result<Option<Tensor>> {
        self.continuation
            .as_ref()
            .map(|c| {
                let parents: Vec<u32> = c.parents.iter().map(|&p| p as u32).collect();
                Tensor::from_vec(parents, c.parents.len(), device)
            })
            .transpose()
    }

    /// The additive mask of continuation queries over their keys — the parent's slots, then
    /// their own: `(continuation rows, 1, width, parent width + width)`, 0 where a query may
    /// look, −∞ elsewhere.
    pub fn continuation_mask(&self, dtype: DType, device: &Device) -> Result<Option<Tensor>> {
        let Some(c) = &self.continuation else {
            return Ok(None);
        };
        let (_, parent_width) = self.primary_dims()?;
        let (rows, width) = c.ids.dims2()?;
        let keys = parent_width + width;
        let mut values = Vec::with_capacity(rows * width * keys);
        for &seen in &c.parent_lens {
            for query in 0..width {
                values.extend(
                    (0..parent_width).map(|k| if k < seen { 0f32 } else { f32::NEG_INFINITY }),
                );
                values
                    .extend((0..width).map(|k| if k <= query { 0f32 } else { f32::NEG_INFINITY }));
            }
        }
        Ok(Some(
            Tensor::from_vec(values, (rows, 1, width, keys), device)?.to_dtype(dtype)?,
        ))
    }
}
