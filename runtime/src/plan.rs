//! The offline arena planner: greedy first-fit by lifetime, like TFLite Micro's
//! `GreedyMemoryPlanner`. Activation tensors (non-constant tensors an operator or the graph
//! touches) are placed largest first, each at the lowest 16-byte-aligned offset (64 for the
//! packed kernels, whose vector loads then do not straddle cache lines) where it does not
//! overlap any already placed tensor whose lifetime (first to last operator using it) intersects
//! its own. Tensors with disjoint lifetimes share memory.
//!
//! The planner needs four u32 words of scratch per tensor (offset, first use, last use, size); the
//! interpreter keeps them in the arena's persistent region, and `Model::arena_size` uses a fixed
//! stack array (hence [`MAX_PLANNED_TENSORS`]).

use crate::error::{Error, Result};
use crate::model::Model;

/// Alignment of every arena allocation.
pub const ALIGN: usize = 16;
/// Most tensors `Model::arena_size` can plan (its scratch is a stack array of 4 words each).
pub const MAX_PLANNED_TENSORS: usize = 1024;
/// Scratch words per tensor: offset, first use, last use, aligned size.
pub const WORDS_PER_TENSOR: usize = 4;
/// "Not in the arena" / "not yet placed" marker.
pub const NONE: u32 = u32::MAX;

/// Alignment of the arena's start and of its regions (plan, records, blobs, activations), and
/// of every blob on the packed kernel paths: a cache line, so that those kernels' 64-byte
/// loads of packed weights do not straddle two lines and their speed does not depend on where
/// the caller's buffer happens to start.
pub const LINE: usize = 64;

/// Rounds `n` up to a multiple of `align` (a power of two), `None` on overflow.
pub fn align_to(n: usize, align: usize) -> Option<usize> {
    n.checked_add(align - 1).map(|v| v & !(align - 1))
}

/// Rounds up to [`ALIGN`], `None` on overflow.
pub fn align_up(n: usize) -> Option<usize> {
    align_to(n, ALIGN)
}

/// Rounds up to [`LINE`], `None` on overflow.
pub fn align_line(n: usize) -> Option<usize> {
    align_to(n, LINE)
}

fn arena_bytes(model: &Model, t: usize, align: usize) -> Result<usize> {
    let info = model.tensor(t)?;
    align_to(info.byte_size(), align).ok_or(Error::BadTensor {
        index: t,
        name: info.error_name(),
        reason: "byte size overflows",
    })
}

/// Every non-constant tensor an operator reads must be a graph input or an earlier operator's
/// output; otherwise it would be read uninitialised. (Quadratic in operators, no scratch.)
fn check_written_before_read(model: &Model) -> Result<()> {
    let is_graph_input = |t: usize| -> Result<bool> {
        for k in 0..model.num_inputs() {
            if model.input_tensor_index(k)? == t {
                return Ok(true);
            }
        }
        Ok(false)
    };
    for i in 0..model.num_operators() {
        let op = model.operator(i)?;
        'inputs: for k in 0..op.inputs.len() {
            let Some(t) = op.input(k) else { continue };
            let info = model.tensor(t)?;
            if info.data.is_some() || is_graph_input(t)? {
                continue;
            }
            for j in 0..i {
                let earlier = model.operator(j)?;
                if (0..earlier.outputs.len()).any(|o| earlier.output(o) == Some(t)) {
                    continue 'inputs;
                }
            }
            return Err(info.error("read by an operator before any operator writes it"));
        }
    }
    Ok(())
}

/// Plans subgraph 0 into `recs` (`WORDS_PER_TENSOR` words per tensor: offset within the
/// activation region or `NONE`, first op, last op, size rounded up to `align`, a power of two:
/// [`ALIGN`], or [`LINE`] for the packed kernels). Returns the activation region's size.
pub fn plan(model: &Model, recs: &mut [u32], align: usize) -> Result<usize> {
    const W: usize = WORDS_PER_TENSOR;
    let n = model.num_tensors();
    let n_ops = model.num_operators() as u32;
    if recs.len() < n * WORDS_PER_TENSOR {
        return Err(Error::TooManyTensors {
            count: n,
            max: recs.len() / WORDS_PER_TENSOR,
        });
    }
    for t in 0..n {
        let size = arena_bytes(model, t, align)?;
        let size = u32::try_from(size).map_err(|_| Error::UnsupportedModel {
            reason: "tensor larger than 4 GiB",
        })?;
        recs[W * t..W * t + W].copy_from_slice(&[NONE, NONE, 0, size]);
    }
    let touch = |recs: &mut [u32], t: usize, at: u32| -> Result<()> {
        if model.tensor(t)?.data.is_some() {
            return Ok(()); // constants live in the model
        }
        let r = &mut recs[W * t..W * t + W];
        r[1] = if r[1] == NONE { at } else { r[1].min(at) };
        r[2] = r[2].max(at);
        Ok(())
    };
    for i in 0..model.num_inputs() {
        touch(recs, model.input_tensor_index(i)?, 0)?;
    }
    for i in 0..model.num_operators() {
        let op = model.operator(i)?;
        for v in [op.inputs, op.outputs] {
            for k in 0..v.len() {
                if let Ok(t) = usize::try_from(v.i32(k)?) {
                    touch(recs, t, i as u32)?;
                }
            }
        }
    }
    check_written_before_read(model)?;
    for i in 0..model.num_outputs() {
        // Graph outputs must survive the last operator.
        touch(recs, model.output_tensor_index(i)?, n_ops)?;
    }
    let mut total = 0usize;
    loop {
        // Next: the largest unplaced arena tensor (ties: lowest index).
        let mut pick: Option<(usize, usize)> = None;
        for t in 0..n {
            if recs[W * t + 1] == NONE || recs[W * t] != NONE {
                continue;
            }
            let size = recs[W * t + 3] as usize;
            if pick.is_none_or(|(_, s)| size > s) {
                pick = Some((t, size));
            }
        }
        let Some((t, size)) = pick else { break };
        let (first, last) = (recs[W * t + 1], recs[W * t + 2]);
        // Lowest offset clear of every placed, lifetime-overlapping tensor: whenever the
        // candidate collides, every offset up to the colliding tensor's end collides too.
        let mut offset = 0usize;
        'search: loop {
            for u in 0..n {
                let off_u = recs[W * u];
                if off_u == NONE || recs[W * u + 1] > last || first > recs[W * u + 2] {
                    continue;
                }
                let (start_u, end_u) = (off_u as usize, off_u as usize + recs[W * u + 3] as usize);
                if start_u < offset + size && offset < end_u && size > 0 && end_u > start_u {
                    offset = end_u;
                    continue 'search;
                }
            }
            break;
        }
        let end = offset
            .checked_add(size)
            .filter(|&e| e < NONE as usize)
            .ok_or(Error::UnsupportedModel {
                reason: "activation memory exceeds 4 GiB",
            })?;
        recs[W * t] = offset as u32;
        total = total.max(end);
    }
    Ok(total)
}
