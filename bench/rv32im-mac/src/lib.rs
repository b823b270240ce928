//! One dot product per candidate number format; `llvm-objdump -d` of the rlib shows each inner
//! loop. `#[inline(never)]` and `#[no_mangle]` keep each one a named function.
#![no_std]

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
