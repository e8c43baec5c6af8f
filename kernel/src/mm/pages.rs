//! Page arithmetic on values that come from user space, with every overflow
//! checked: a length near 2^64 must become an errno, never a kernel panic.
//! Every system call that rounds a length or adds one to an address goes
//! through these helpers.

use super::frame::FRAME_SIZE;
use super::layout::USER_END;

pub const PAGE: u64 = FRAME_SIZE;

/// `len` rounded up to whole pages (Linux's PAGE_ALIGN); `None` if that
/// does not fit in 64 bits.
pub const fn round_up(len: u64) -> Option<u64> {
    match len.checked_add(PAGE - 1) {
        Some(v) => Some(v & !(PAGE - 1)),
        None => None,
    }
}

/// `addr` rounded down to its page.
pub const fn round_down(addr: u64) -> u64 {
    addr & !(PAGE - 1)
}

pub const fn is_aligned(addr: u64) -> bool {
    addr.is_multiple_of(PAGE)
}

/// The page-rounded end of [start, start + len), if it neither wraps nor
/// leaves user space. An empty range ends at `start`.
pub const fn user_end(start: u64, len: u64) -> Option<u64> {
    let Some(len) = round_up(len) else { return None };
    match start.checked_add(len) {
        Some(end) if end <= USER_END => Some(end),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test_case]
    fn rounding_never_overflows() {
        assert_eq!(round_up(0), Some(0));
        assert_eq!(round_up(1), Some(PAGE));
        assert_eq!(round_up(PAGE), Some(PAGE));
        assert_eq!(round_up(u64::MAX - PAGE + 1), Some(u64::MAX - PAGE + 1), "the last page fits");
        assert_eq!(round_up(u64::MAX - PAGE + 2), None);
        assert_eq!(round_up(u64::MAX), None);
        assert_eq!(round_down(0x1fff), 0x1000);
    }

    #[test_case]
    fn user_ranges_stay_below_user_end() {
        assert_eq!(user_end(0x1000, 1), Some(0x2000));
        assert_eq!(user_end(0x1000, 0), Some(0x1000));
        assert_eq!(user_end(USER_END - PAGE, PAGE), Some(USER_END));
        assert_eq!(user_end(USER_END - PAGE, PAGE + 1), None);
        assert_eq!(user_end(0x1000, u64::MAX), None);
        assert_eq!(user_end(u64::MAX - 0xfff, 1), None, "wraps");
    }
}
