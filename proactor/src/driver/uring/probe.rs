//! What the running kernel's io_uring offers: which opcodes, which features.

use io_uring::{opcode, IoUring, Probe};
use std::io;

/// Every opcode the proactor submits, by name. The driver is only chosen when all are present.
pub const REQUIRED_OPCODES: &[(&str, u8)] = &[
    ("NOP", opcode::Nop::CODE),
    ("READ", opcode::Read::CODE),
    ("WRITE", opcode::Write::CODE),
    ("READV", opcode::Readv::CODE),
    ("WRITEV", opcode::Writev::CODE),
    ("RECV", opcode::Recv::CODE),
    ("SEND", opcode::Send::CODE),
    ("ACCEPT", opcode::Accept::CODE),
    ("CONNECT", opcode::Connect::CODE),
    ("SHUTDOWN", opcode::Shutdown::CODE),
    ("CLOSE", opcode::Close::CODE),
    ("OPENAT", opcode::OpenAt::CODE),
    ("FSYNC", opcode::Fsync::CODE),
    ("STATX", opcode::Statx::CODE),
    ("TIMEOUT", opcode::Timeout::CODE),
    ("LINK_TIMEOUT", opcode::LinkTimeout::CODE),
    ("ASYNC_CANCEL", opcode::AsyncCancel::CODE),
    ("POLL_ADD", opcode::PollAdd::CODE),
];

/// Opcodes the proactor can use when present but does not require.
pub const OPTIONAL_OPCODES: &[(&str, u8)] = &[
    ("SPLICE", opcode::Splice::CODE),
    ("SEND_ZC", opcode::SendZc::CODE),
    ("MSG_RING", opcode::MsgRingData::CODE),
    ("PROVIDE_BUFFERS", opcode::ProvideBuffers::CODE),
    ("SOCKET", opcode::Socket::CODE),
    ("FUTEX_WAIT", opcode::FutexWait::CODE),
];

/// The result of probing the kernel's io_uring.
#[derive(Debug, Clone)]
pub struct KernelProbe {
    /// `(name, supported)` for every required and optional opcode.
    pub opcodes: Vec<(&'static str, bool, bool)>,
    /// `(name, present)` for the ring features the kernel reports.
    pub features: Vec<(&'static str, bool)>,
}

impl KernelProbe {
    /// Names of required opcodes the kernel lacks.
    pub fn missing_required(&self) -> Vec<&'static str> {
        self.opcodes
            .iter()
            .filter(|(_, required, supported)| *required && !*supported)
            .map(|(name, _, _)| *name)
            .collect()
    }
}

/// Sets up a small ring and asks the kernel what it supports.
pub fn probe_kernel() -> io::Result<KernelProbe> {
    let ring = IoUring::new(2)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    let mut opcodes = Vec::new();
    for (name, code) in REQUIRED_OPCODES {
        opcodes.push((*name, true, probe.is_supported(*code)));
    }
    for (name, code) in OPTIONAL_OPCODES {
        opcodes.push((*name, false, probe.is_supported(*code)));
    }
    let p = ring.params();
    let features = vec![
        ("SINGLE_MMAP", p.is_feature_single_mmap()),
        ("NODROP", p.is_feature_nodrop()),
        ("SUBMIT_STABLE", p.is_feature_submit_stable()),
        ("RW_CUR_POS", p.is_feature_rw_cur_pos()),
        ("FAST_POLL", p.is_feature_fast_poll()),
        ("POLL_32BITS", p.is_feature_poll_32bits()),
        ("EXT_ARG", p.is_feature_ext_arg()),
        ("NATIVE_WORKERS", p.is_feature_native_workers()),
        ("RSRC_TAGS", p.is_feature_resource_tagging()),
        ("CQE_SKIP", p.is_feature_skip_cqe_on_success()),
        ("LINKED_FILE", p.is_feature_linked_file()),
        ("RECVSEND_BUNDLE", p.is_feature_recvsend_bundle()),
        ("MIN_TIMEOUT", p.is_feature_min_timeout()),
    ];
    Ok(KernelProbe { opcodes, features })
}
