//! `to-ppm IMAGE OUT.ppm`: writes IMAGE (PNG, JPEG, BMP or PPM/PGM, decoded as kdrun decodes it)
//! as a binary PPM for the C example and the firmware (scripts/classify-exported.sh).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [image, out] = args.as_slice() else {
        eprintln!("usage: to-ppm IMAGE OUT.ppm");
        return ExitCode::FAILURE;
    };
    let result = kdtests::ppm::from_image(image).and_then(|ppm| {
        std::fs::write(out, ppm).map_err(|e| format!("writing {}: {e}", out.display()))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("to-ppm: {e}");
            ExitCode::FAILURE
        }
    }
}
