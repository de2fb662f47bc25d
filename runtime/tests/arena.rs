//! Arena sizing and planning: too-small arenas are refused with the exact need, and the greedy
//! planner never lets two simultaneously live tensors share bytes.

use kdruntime::plan::{self, NONE, WORDS_PER_TENSOR};
use kdruntime::{Error, Interpreter, Model};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/core/{name}.tflite",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn too_small_arena_reports_needed_size() {
    for name in ["pipeline_u8_classifier", "conv_same_1x1_pc", "fc_pt_wide"] {
        let bytes = fixture(name);
        let model = Model::from_bytes(&bytes).unwrap();
        let need = model.arena_size().unwrap();
        let mut scratch = vec![0u32; model.num_tensors() * WORDS_PER_TENSOR];
        assert_eq!(model.arena_size_with_scratch(&mut scratch).unwrap(), need);
        for given in [0, 1, 64, need / 2, need - 1] {
            let mut arena = vec![0u8; given];
            match Interpreter::new(&model, &mut arena) {
                Err(Error::ArenaTooSmall { needed, given: g }) => {
                    assert_eq!((needed, g), (need, given), "{name}");
                }
                Err(e) => panic!("{name}: unexpected error {e}"),
                Ok(_) => panic!("{name}: {given} bytes accepted, {need} needed"),
            }
        }
        // Exactly the reported size works, whatever the buffer's alignment.
        let mut big = vec![0u8; need + 16];
        for shift in 0..16 {
            assert!(
                Interpreter::new(&model, &mut big[shift..shift + need]).is_ok(),
                "{name} at +{shift}"
            );
        }
    }
}

#[test]
fn error_message_names_the_sizes() {
    let bytes = fixture("pipeline_u8_classifier");
    let model = Model::from_bytes(&bytes).unwrap();
    let need = model.arena_size().unwrap();
    let mut arena = vec![0u8; 100];
    let e = Interpreter::new(&model, &mut arena).err().unwrap();
    assert_eq!(
        e.to_string(),
        format!("arena too small: the plan needs {need} bytes, 100 were given")
    );
}

/// The pipeline's activation plan, derived by hand in the comments (sizes rounded up to 16):
/// tensors (index: bytes, lifetime in ops) image 0: 432 [0,0], q 1: 432 [0,1], conv0 4: 1152
/// [1,2], conv1 7: 432 [2,3], mean 9: 16 [3,4], flat 11: 16 [4,5], logits 13: 16 [5,6],
/// squeezed 14: 16 [6,7], probs 15: 32 [7,8]. Largest first, lowest free offset:
/// conv0 @0, image @0 (disjoint lifetime), q @1152, conv1 @1152, probs @0, mean @0, flat @16,
/// logits @0, squeezed @32 -> 1584 bytes (q and conv1 end at 1152 + 432) instead of 2544
/// without reuse.
#[test]
fn pipeline_plan_matches_hand_derivation() {
    let bytes = fixture("pipeline_u8_classifier");
    let model = Model::from_bytes(&bytes).unwrap();
    let mut recs = vec![0u32; model.num_tensors() * WORDS_PER_TENSOR];
    let total = plan::plan(&model, &mut recs, plan::ALIGN).unwrap();
    assert_eq!(total, 1584);
    let off = |t: usize| recs[t * WORDS_PER_TENSOR];
    let expected = [
        (0, 0),
        (1, 1152),
        (4, 0),
        (7, 1152),
        (9, 0),
        (11, 16),
        (13, 0),
        (14, 32),
        (15, 0),
    ];
    for (t, o) in expected {
        assert_eq!(off(t), o, "tensor {t}");
    }
    for t in [2, 3, 5, 6, 8, 10, 12] {
        assert_eq!(off(t), NONE, "constant tensor {t} must not be planned");
    }
}

#[test]
fn live_tensors_never_overlap_in_any_fixture() {
    let dir = format!("{}/tests/fixtures/core", env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "tflite") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let model = Model::from_bytes(&bytes).unwrap();
        let n = model.num_tensors();
        // The portable kernels' 16-byte alignment and the packed kernels' cache lines.
        for align in [plan::ALIGN, plan::LINE] {
            let mut recs = vec![0u32; n * WORDS_PER_TENSOR];
            let total = plan::plan(&model, &mut recs, align).unwrap();
            let r = |t: usize| &recs[t * WORDS_PER_TENSOR..(t + 1) * WORDS_PER_TENSOR];
            for a in 0..n {
                for b in a + 1..n {
                    let (ra, rb) = (r(a), r(b));
                    if ra[0] == NONE || rb[0] == NONE {
                        continue;
                    }
                    assert_eq!(ra[0] as usize % align, 0);
                    assert!(ra[0] as usize + ra[3] as usize <= total);
                    let live_together = ra[1] <= rb[2] && rb[1] <= ra[2];
                    let share_bytes = ra[0] < rb[0] + rb[3] && rb[0] < ra[0] + ra[3];
                    assert!(
                        !(live_together && share_bytes),
                        "{path:?}: tensors {a} and {b} overlap"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 30, "only {checked} tensor pairs checked");
}
