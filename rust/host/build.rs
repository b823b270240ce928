//! Embeds the guest ELF built by scripts/build-guest.sh (a different toolchain and target, so cargo
//! cannot build it as a dependency). The path comes from VERITRAIN_GUEST_ELF.
fn main() {
    println!("cargo:rerun-if-env-changed=VERITRAIN_GUEST_ELF");
    let path = std::env::var("VERITRAIN_GUEST_ELF").unwrap_or_else(|_| {
        panic!("VERITRAIN_GUEST_ELF is not set: build the guest with scripts/build-guest.sh first (scripts/setup.sh does both)")
    });
    let meta = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("VERITRAIN_GUEST_ELF={path}: {e}; run scripts/build-guest.sh"));
    assert!(meta.len() > 0, "VERITRAIN_GUEST_ELF={path} is empty");
    println!("cargo:rerun-if-changed={path}");
    println!("cargo:rustc-env=VERITRAIN_GUEST_ELF_PATH={path}");
}
