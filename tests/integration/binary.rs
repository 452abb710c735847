//! What the built binary itself must be: linked with packed relative relocations
//! (`DT_RELR`, from build.rs), which keep ~150 KiB of relocation entries out of the
//! daemon's resident memory. A build that loses build.rs (a source set without it, a
//! changed link line) fails here instead of silently growing.

/// The tags of the binary's dynamic section (ELF64, little-endian).
fn dynamic_tags(elf: &[u8]) -> Vec<u64> {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF file");
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38));
    const PT_DYNAMIC: u32 = 2;
    let dynamic = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&ph| u32::from_le_bytes(elf[ph..ph + 4].try_into().unwrap()) == PT_DYNAMIC)
        .expect("a dynamically linked binary has a PT_DYNAMIC header");
    let (offset, size) = (u64_at(dynamic + 8) as usize, u64_at(dynamic + 32) as usize);
    (offset..offset + size)
        .step_by(16)
        .map(u64_at)
        .take_while(|&tag| tag != 0)
        .collect()
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
fn the_binary_packs_its_relative_relocations() {
    const DT_RELA: u64 = 7;
    const DT_RELR: u64 = 36;
    let elf = std::fs::read(env!("CARGO_BIN_EXE_keyfleet")).unwrap();
    let tags = dynamic_tags(&elf);
    assert!(
        tags.contains(&DT_RELA),
        "the parser must see the usual tags: {tags:?}"
    );
    assert!(
        tags.contains(&DT_RELR),
        "no DT_RELR in the dynamic section: build.rs's -z pack-relative-relocs was not applied ({tags:?})"
    );
}
