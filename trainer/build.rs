//! Embeds libtorch's library folder as an rpath so `kdtrain` runs without LD_LIBRARY_PATH, and
//! keeps libtorch_cuda linked under the `cuda` feature (the linker would otherwise drop it).
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
