//! The CPU features that decide what `--precision int8` gains: ONNX Runtime's int8 products
//! (MLAS) run on AMX tiles where the CPU and the kernel offer them (Intel Sapphire Rapids and
//! later), else on VNNI dot-product instructions (AVX-512 VNNI or AVX-VNNI), else on plain
//! AVX2, where int8 gains much less over fp32.

/// The int8-relevant x86 features this CPU has, by their `/proc/cpuinfo` names.
pub fn int8_features() -> Vec<&'static str> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            out.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            out.push("avx512f");
        }
        if std::arch::is_x86_feature_detected!("avx512vnni") {
            out.push("avx512_vnni");
        }
        if std::arch::is_x86_feature_detected!("avxvnni") {
            out.push("avx_vnni");
        }
        if amx_int8() {
            out.push("amx_int8");
        }
    }
    out
}

/// AMX int8 tiles usable here: the CPU has them (CPUID leaf 7: AMX-TILE and AMX-INT8) and
/// the kernel saves their state (XCR0 bits 17 and 18), as `/proc/cpuinfo`'s `amx_int8` says.
/// By hand because std's `is_x86_feature_detected!` does not take AMX features on stable Rust.
#[cfg(target_arch = "x86_64")]
fn amx_int8() -> bool {
    #[target_feature(enable = "xsave")]
    fn xcr0() -> u64 {
        // SAFETY: reading XCR0 needs only XSAVE, which this function requires.
        unsafe { std::arch::x86_64::_xgetbv(0) }
    }
    if !std::arch::is_x86_feature_detected!("xsave") {
        return false;
    }
    let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
    let tile_int8 = (1 << 24) | (1 << 25);
    // SAFETY: XSAVE was detected above.
    edx & tile_int8 == tile_int8 && unsafe { xcr0() } & (3 << 17) == 3 << 17
}

/// Whether int8 products have VNNI instructions here.
pub fn has_vnni() -> bool {
    int8_features().iter().any(|f| f.ends_with("vnni"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn features_match_proc_cpuinfo() {
        // The kernel's view of the same CPU: each feature we report is listed there.
        let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
            return;
        };
        let flags: Vec<&str> = info
            .lines()
            .find(|l| l.starts_with("flags"))
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default();
        for f in super::int8_features() {
            assert!(flags.contains(&f), "{f} not in /proc/cpuinfo flags");
        }
        assert_eq!(
            super::int8_features().contains(&"amx_int8"),
            flags.contains(&"amx_int8")
        );
        assert_eq!(
            super::has_vnni(),
            flags.contains(&"avx512_vnni") || flags.contains(&"avx_vnni")
        );
    }
}
