// Link every program as a static, non-PIE executable at the traditional
// x86_64 base address, with `_start` as its entry.
fn main() {
    for arg in ["--no-pie", "--image-base=0x400000", "--entry=_start", "--build-id=none"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
