//! Images as binary PPM (P6, RGB, maxval 255), the one format the C example and the firmware
//! read: decoded with the `image` crate, the decoder kdrun uses, so every program sees the
//! same pixels.

use std::path::Path;

/// Decodes `path` (PNG, JPEG, BMP or PPM/PGM) and encodes it as a binary PPM. Grey images are
/// replicated into R, G and B, which kdruntime's letterbox also does with a grey source, so a
/// classification does not change.
pub fn from_image(path: &Path) -> Result<Vec<u8>, String> {
    let rgb = image::open(path)
        .map_err(|e| format!("decoding {}: {e}", path.display()))?
        .to_rgb8();
    let mut ppm = format!("P6\n{} {}\n255\n", rgb.width(), rgb.height()).into_bytes();
    ppm.extend_from_slice(rgb.as_raw());
    Ok(ppm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_png_becomes_rgb_ppm() {
        let dir = std::env::temp_dir().join(format!("kdtests-ppm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("g.png");
        image::GrayImage::from_raw(3, 2, vec![0, 1, 2, 250, 254, 255])
            .unwrap()
            .save(&png)
            .unwrap();
        let ppm = from_image(&png).unwrap();
        let mut want = b"P6\n3 2\n255\n".to_vec();
        for v in [0u8, 1, 2, 250, 254, 255] {
            want.extend_from_slice(&[v, v, v]);
        }
        assert_eq!(ppm, want);
        let err = from_image(&dir.join("missing.png")).unwrap_err();
        assert!(err.contains("missing.png"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
