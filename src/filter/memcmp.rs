//! The Wasm build's `memcmp`, in place of wasi-libc's byte-at-a-time one (see
//! [`crate::memcmp`] for why). Being defined here, the linker never pulls libc's.

/// # Safety
/// As C's `memcmp`: `a` and `b` are valid for reads of `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        // The pointers may be dangling then, which a slice must never be.
        return 0;
    }
    // SAFETY: the caller vouches for n readable bytes at each, and n > 0 means neither is null.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, n),
            std::slice::from_raw_parts(b, n),
        )
    };
    crate::memcmp::memcmp(a, b)
}
