//! Writes the demo's small int8 network: MobileNetV2-0.35 at 96x96 with 10 outputs and a
//! SOFTMAX, calibrated on real photos (`kdtests::nets`), plus labels.txt, the letterboxed
//! calibration photo as a raw uint8 input, and that photo as a binary PPM for the C example. Its weights are random: the trainer replaces this
//! model with a trained one once distillation and export exist.
//!
//! Usage: `demo-model OUT_DIR [LABELS...]`

use std::path::PathBuf;
use std::process::ExitCode;

use kdtests::nets::demo_model;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: demo-model OUT_DIR [LABELS...]");
        return ExitCode::FAILURE;
    };
    let mut labels: Vec<String> = args.collect();
    if labels.is_empty() {
        labels = (0..10).map(|i| format!("class_{i}")).collect();
    }
    let result = demo_model(labels.len()).and_then(|net| {
        std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
        let write = |name: &str, bytes: &[u8]| {
            let p = out.join(name);
            std::fs::write(&p, bytes).map_err(|e| format!("writing {}: {e}", p.display()))
        };
        write("model.tflite", &net.model)?;
        write("labels.txt", (labels.join("\n") + "\n").as_bytes())?;
        write("input.u8", &net.input)?;
        let photo = kdtests::workspace_root()
            .join("data/raw/photos")
            .join(&net.photo);
        write("photo.ppm", &kdtests::ppm::from_image(&photo)?)?;
        println!(
            "{}: {} bytes, {} operators, {:.1} M MACs, input {}x{}x3 uint8 ({})",
            net.name,
            net.model.len(),
            net.op_count,
            net.macs as f64 / 1e6,
            net.resolution,
            net.resolution,
            net.photo
        );
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-model: {e}");
            ExitCode::FAILURE
        }
    }
}
