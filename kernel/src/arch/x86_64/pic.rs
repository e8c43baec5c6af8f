//! The legacy 8259 PICs. We use the local APIC; the PICs are remapped away from
//! the exception vectors (the BIOS leaves IRQ 0 on vector 8, the double fault)
//! and every line is masked.

use ::x86_64::instructions::port::Port;

/// Where the PICs deliver if anything still comes through (spurious IRQ 7/15).
pub const PIC_VECTOR_BASE: u8 = 0x20;

pub fn disable() {
    let mut master_cmd = Port::<u8>::new(0x20);
    let mut master_data = Port::<u8>::new(0x21);
    let mut slave_cmd = Port::<u8>::new(0xa0);
    let mut slave_data = Port::<u8>::new(0xa1);
    // SAFETY: these are the standard PIC ports; the sequence is the documented
    // ICW1-ICW4 initialisation followed by masking every line, which only
    // changes where (and whether) the PICs deliver interrupts.
    unsafe {
        master_cmd.write(0x11); // ICW1: initialise, ICW4 follows
        slave_cmd.write(0x11);
        master_data.write(PIC_VECTOR_BASE); // ICW2: vector offsets
        slave_data.write(PIC_VECTOR_BASE + 8);
        master_data.write(4); // ICW3: slave on IRQ 2
        slave_data.write(2);
        master_data.write(1); // ICW4: 8086 mode
        slave_data.write(1);
        master_data.write(0xff); // mask everything
        slave_data.write(0xff);
    }
}
