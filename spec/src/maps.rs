//! Map types, named as the `io.ebpf.maps` label names them (bpfman's names:
//! the kernel's `BPF_MAP_TYPE_*` in lower case, per-CPU spelled `per_cpu`).

/// Kernel map type numbers (uapi `enum bpf_map_type`) and their label names.
const MAP_TYPES: &[&str] = &[
    "unspec",
    "hash",
    "array",
    "prog_array",
    "perf_event_array",
    "per_cpu_hash",
    "per_cpu_array",
    "stack_trace",
    "cgroup_array",
    "lru_hash",
    "lru_per_cpu_hash",
    "lpm_trie",
    "array_of_maps",
    "hash_of_maps",
    "devmap",
    "sockmap",
    "cpumap",
    "xskmap",
    "sockhash",
    "cgroup_storage",
    "reuseport_sockarray",
    "per_cpu_cgroup_storage",
    "queue",
    "stack",
    "sk_storage",
    "devmap_hash",
    "struct_ops",
    "ringbuf",
    "inode_storage",
    "task_storage",
    "bloom_filter",
    "user_ringbuf",
    "cgrp_storage",
    "arena",
];

/// The label name of kernel map type `n`, or `None` for a type number this
/// version does not know (newer than the kernel headers we were written for).
pub fn map_type_name(n: u32) -> Option<&'static str> {
    if n == 0 {
        return None;
    }
    MAP_TYPES.get(usize::try_from(n).ok()?).copied()
}

/// The kernel number of a map type label, accepting `percpu` spellings.
pub fn map_type_number(name: &str) -> Option<u32> {
    let norm = name
        .trim()
        .to_ascii_lowercase()
        .replace("percpu", "per_cpu");
    MAP_TYPES
        .iter()
        .position(|n| *n == norm)
        .filter(|&i| i != 0)
        .and_then(|i| u32::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uapi_numbers() {
        assert_eq!(map_type_name(1), Some("hash"));
        assert_eq!(map_type_name(6), Some("per_cpu_array"));
        assert_eq!(map_type_name(27), Some("ringbuf"));
        assert_eq!(map_type_name(33), Some("arena"));
        assert_eq!(map_type_name(0), None);
        assert_eq!(map_type_name(999), None);
        assert_eq!(map_type_number("percpu_array"), Some(6));
        assert_eq!(map_type_number("unspec"), None);
    }
}
