//! One dot product per candidate number format; `llvm-objdump -d` of the rlib shows each inner
//! loop. `#[inline(never)]` and `#[no_mangle]` keep each one a named function.
#![no_std]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::slice::from_raw_parts as raw;
use core::sync::atomic::{AtomicUsize, Ordering};
use veritrain_core::kernels;

/// The canonical kernels themselves. The counter runs each at two inner lengths (`in` for the
/// forward pass, `out` for the input gradient, `batch` for the parameter gradient) with the other
/// dimensions fixed: the difference divided by the added multiply-accumulates is the cost of one.
/// Each returns one output element so that nothing is optimised away.
#[no_mangle]
pub unsafe extern "C" fn k_forward(
    x: *const i32,
    w: *const i32,
    b: *const i32,
    batch: usize,
    in_f: usize,
    out_f: usize,
) -> i32 {
    kernels::linear_forward(
        raw(x, batch * in_f),
        raw(w, in_f * out_f),
        raw(b, out_f),
        in_f,
        out_f,
    )[0]
}

#[no_mangle]
pub unsafe extern "C" fn k_grad_input(
    dy: *const i32,
    w: *const i32,
    batch: usize,
    in_f: usize,
    out_f: usize,
) -> i32 {
    kernels::linear_grad_input(raw(dy, batch * out_f), raw(w, in_f * out_f), in_f, out_f)[0]
}

#[no_mangle]
pub unsafe extern "C" fn k_grad_params(
    dy: *const i32,
    x: *const i32,
    batch: usize,
    in_f: usize,
    out_f: usize,
) -> i32 {
    kernels::linear_grad_params(raw(dy, batch * out_f), raw(x, batch * in_f), in_f, out_f).0[0]
}

#[no_mangle]
pub unsafe extern "C" fn k_softmax_ce(
    z: *const i32,
    y: *const u32,
    batch: usize,
    classes: usize,
) -> i32 {
    kernels::softmax_cross_entropy(raw(z, batch * classes), raw(y, batch), classes).0
}

#[no_mangle]
pub unsafe extern "C" fn k_sgd(w: *mut i32, g: *const i32, buf: *mut i32, n: usize) -> i32 {
    let (w, buf) = (
        core::slice::from_raw_parts_mut(w, n),
        core::slice::from_raw_parts_mut(buf, n),
    );
    kernels::sgd_step(w, raw(g, n), buf, 107_374_182, 966_367_642, 107_374);
    w[0]
}

#[no_mangle]
pub unsafe extern "C" fn k_adam(
    w: *mut i32,
    g: *const i32,
    m: *mut i32,
    v: *mut u64,
    n: usize,
) -> i32 {
    let (w, m) = (
        core::slice::from_raw_parts_mut(w, n),
        core::slice::from_raw_parts_mut(m, n),
    );
    let v = core::slice::from_raw_parts_mut(v, n);
    let a = kernels::Adam {
        lr: 1_073_742,
        beta1: 966_367_642,
        beta2: 1_072_668_082,
        eps: 0,
        weight_decay: 0,
    };
    kernels::adam_step(w, raw(g, n), m, v, &a, 3);
    w[0]
}

#[no_mangle]
pub unsafe extern "C" fn k_relu(x: *const i32, n: usize) -> i32 {
    kernels::relu(raw(x, n))[0]
}

#[no_mangle]
pub unsafe extern "C" fn k_relu_backward(x: *const i32, dy: *const i32, n: usize) -> i32 {
    kernels::relu_backward(raw(x, n), raw(dy, n))[0]
}

/// A bump allocator over the counter's memory from 8 MiB on (never freed: each call is short).
struct Bump;
static NEXT: AtomicUsize = AtomicUsize::new(0x80_0000);

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let at = (NEXT.load(Ordering::Relaxed) + l.align() - 1) & !(l.align() - 1);
        NEXT.store(at + l.size(), Ordering::Relaxed);
        at as *mut u8
    }
    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

#[global_allocator]
static ALLOC: Bump = Bump;

/// Q8.24 (or any Qm.n in i32): i32 x i32 -> exact i64 product, wrapping i64 accumulation.
#[no_mangle]
#[inline(never)]
pub fn dot_i32_i64(a: &[i32], b: &[i32]) -> i64 {
    let mut acc = 0i64;
    for (x, y) in a.iter().zip(b) {
        acc = acc.wrapping_add(i64::from(*x) * i64::from(*y));
    }
    acc
}

/// The same with a strided second operand (a matrix column), as in a backward pass read in place.
#[no_mangle]
#[inline(never)]
pub fn dot_i32_i64_strided(a: &[i32], b: &[i32], stride: usize) -> i64 {
    let mut acc = 0i64;
    for (x, y) in a.iter().zip(b.iter().step_by(stride)) {
        acc = acc.wrapping_add(i64::from(*x) * i64::from(*y));
    }
    acc
}

/// Q8.8 (i16): i16 x i16 -> i32 product, i32 accumulation (overflows after 2 full-scale terms).
#[no_mangle]
#[inline(never)]
pub fn dot_i16_i32(a: &[i16], b: &[i16]) -> i32 {
    let mut acc = 0i32;
    for (x, y) in a.iter().zip(b) {
        acc = acc.wrapping_add(i32::from(*x) * i32::from(*y));
    }
    acc
}

/// i16 x i16 -> i32 product, exact i64 accumulation.
#[no_mangle]
#[inline(never)]
pub fn dot_i16_i64(a: &[i16], b: &[i16]) -> i64 {
    let mut acc = 0i64;
    for (x, y) in a.iter().zip(b) {
        acc = acc.wrapping_add(i64::from(i32::from(*x) * i32::from(*y)));
    }
    acc
}

/// f32 multiply-accumulate: soft-float calls on rv32im.
#[no_mangle]
#[inline(never)]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (x, y) in a.iter().zip(b) {
        acc += *x * *y;
    }
    acc
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
