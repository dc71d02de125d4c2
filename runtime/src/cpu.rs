//! The CPU features that decide what `--precision int8` gains: ONNX Runtime's int8 products
//! (MLAS) run on VNNI dot-product instructions where the CPU has them (AVX-512 VNNI or
//! AVX-VNNI) and on plain AVX2 otherwise, where int8 gains much less over fp32.

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
    }
    out
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
            super::has_vnni(),
            flags.contains(&"avx512_vnni") || flags.contains(&"avx_vnni")
        );
    }
}
