//! A thin, row-major view of `gemm`'s strided single-precision product, and a pointer that
//! parallel tasks writing disjoint parts of one buffer can share.

/// `dst[m×n] = beta · lhs[m×k] · rhs[k×n]`, every matrix given by its first element and
/// its row and column strides (in elements). Runs on the calling thread: callers already
/// split the work into parallel tasks.
///
/// # Safety
/// Every element addressed through the pointers and strides must be valid (`dst` for
/// writes), and `dst` must not overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    dst_cs: isize,
    lhs: *const f32,
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: *const f32,
    rhs_rs: isize,
    rhs_cs: isize,
    beta: f32,
) {
    // SAFETY: forwarded to the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            false,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            0.0,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// A raw output pointer shared by parallel tasks that each write their own disjoint
/// elements of one buffer.
#[derive(Clone, Copy)]
pub struct SendPtr(pub *mut f32);

// SAFETY: only used by tasks that write disjoint elements (see each call site).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    pub fn get(self) -> *mut f32 {
        self.0
    }
}
