-- The default seccomp profile of every container: an allowlist. A system
-- call not named here fails with EPERM. The set follows what Docker and
-- containerd allow by default, a little tighter (docs/security.md says where
-- and why). Names a kernel or libseccomp does not know are skipped by runc,
-- so one list serves every architecture; the output is sorted and stable,
-- because bundle configs are compared byte for byte between releases.
local json = require("ctcli.base.json")

local M = {}

local A = json.array

local EPERM, ENOSYS = 1, 38

-- Allowed without conditions, in groups (docs/security.md lists them).
M.GROUPS = {
  { name = "files and directories", syscalls = {
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range",
    "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64",
    "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat",
    "fcntl", "fcntl64", "fdatasync", "flock", "fstat", "fstat64", "fstatat64", "fstatfs",
    "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents",
    "getdents64", "ioctl", "lchown", "lchown32", "link", "linkat", "_llseek", "lseek", "lstat",
    "lstat64", "mkdir", "mkdirat", "name_to_handle_at", "newfstatat", "open", "openat", "openat2",
    "pipe", "pipe2", "pread64", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read",
    "readahead", "readlink", "readlinkat", "readv", "rename", "renameat", "renameat2", "rmdir",
    "sendfile", "sendfile64", "splice", "stat", "stat64", "statfs", "statfs64", "statx",
    "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate", "truncate64",
    "umask", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes",
    "vmsplice", "write", "writev", "cachestat",
  } },
  { name = "extended attributes", syscalls = {
    "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "lgetxattr",
    "listxattr", "llistxattr", "lremovexattr", "lsetxattr", "removexattr", "setxattr",
  } },
  { name = "waiting for events", syscalls = {
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "fanotify_mark", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "_newselect", "poll", "ppoll",
    "ppoll_time64", "pselect6", "pselect6_time64", "select",
  } },
  { name = "asynchronous I/O (the classic interface)", syscalls = {
    "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "io_setup", "io_submit",
  } },
  { name = "memory", syscalls = {
    "brk", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore",
    "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap", "msync", "munlock",
    "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages",
  } },
  { name = "processes and threads", syscalls = {
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "get_robust_list",
    "getcpu", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrlimit", "getrusage",
    "getsid", "gettid", "ioprio_get", "ioprio_set", "kill", "pidfd_open", "pidfd_send_signal",
    "prctl", "prlimit64", "process_mrelease", "restart_syscall", "rseq", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "set_robust_list", "set_tid_address", "setpgid", "setpriority", "setrlimit",
    "setsid", "tgkill", "times", "tkill", "ugetrlimit", "vfork", "wait4", "waitid", "waitpid",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
  } },
  { name = "user and group ids", syscalls = {
    "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
    "getgroups32", "getresgid", "getresgid32", "getresuid", "getresuid32", "getuid", "getuid32",
    "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setuid", "setuid32",
  } },
  { name = "signals", syscalls = {
    "alarm", "getitimer", "pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "setitimer", "sigaltstack", "signalfd",
    "signalfd4", "sigprocmask", "sigreturn",
  } },
  { name = "time and timers (reading the clock, not setting it)", syscalls = {
    "adjtimex", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
    "gettimeofday", "nanosleep", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
  } },
  { name = "futexes", syscalls = {
    "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake",
  } },
  { name = "sockets", syscalls = {
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen",
    "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg",
    "sendto", "setsockopt", "shutdown", "socketcall", "socketpair",
  } },
  { name = "System V and POSIX IPC (private to the container's IPC namespace)", syscalls = {
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt",
    "shmget",
  } },
  { name = "system information", syscalls = { "getrandom", "sysinfo", "uname" } },
  { name = "architecture specific: x86", syscalls = { "arch_prctl", "get_thread_area", "set_thread_area" } },
  { name = "architecture specific: arm", syscalls = {
    "arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls",
    "sync_file_range2",
  } },
}

-- Allowed only with these arguments: each entry is one rule; rules for the
-- same call add up (any of them allows it). `value` and `valueTwo` of a
-- masked comparison are the mask and the value the masked argument must have.
local S_IFMT = 61440 -- 0170000
local S_IFREG, S_IFIFO, S_IFSOCK = 32768, 4096, 49152
local NAMESPACE_FLAGS = 2114060288 -- CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
local AF_VSOCK = 40

local function masked(index, mask, value)
  return { index = index, value = mask, valueTwo = value, op = "SCMP_CMP_MASKED_EQ" }
end

M.CONDITIONAL = {
  -- Execution domains: Linux itself, 32-bit Linux, the UNAME26 kernel
  -- version compatibility flag (alone and with 32-bit), and the query.
  { names = { "personality" }, args = { { index = 0, value = 0, op = "SCMP_CMP_EQ" } } },
  { names = { "personality" }, args = { { index = 0, value = 8, op = "SCMP_CMP_EQ" } } },
  { names = { "personality" }, args = { { index = 0, value = 131072, op = "SCMP_CMP_EQ" } } },
  { names = { "personality" }, args = { { index = 0, value = 131080, op = "SCMP_CMP_EQ" } } },
  { names = { "personality" }, args = { { index = 0, value = 4294967295, op = "SCMP_CMP_EQ" } } },
  -- New processes and threads, but no new namespaces (CAP_SYS_ADMIN is not given).
  { names = { "clone" }, args = { masked(0, NAMESPACE_FLAGS, 0) } },
  -- clone3 passes its flags in memory, where seccomp cannot look: "not
  -- implemented" makes the C library fall back to clone, which is checked.
  { names = { "clone3" }, action = "SCMP_ACT_ERRNO", errnoRet = ENOSYS },
  -- Sockets of every family but vsock (a channel to the hypervisor).
  { names = { "socket" }, args = { { index = 0, value = AF_VSOCK, op = "SCMP_CMP_NE" } } },
  -- Regular files, FIFOs and sockets; never a device node.
  { names = { "mknod" }, args = { masked(1, S_IFMT, 0) } },
  { names = { "mknod" }, args = { masked(1, S_IFMT, S_IFREG) } },
  { names = { "mknod" }, args = { masked(1, S_IFMT, S_IFIFO) } },
  { names = { "mknod" }, args = { masked(1, S_IFMT, S_IFSOCK) } },
  { names = { "mknodat" }, args = { masked(2, S_IFMT, 0) } },
  { names = { "mknodat" }, args = { masked(2, S_IFMT, S_IFREG) } },
  { names = { "mknodat" }, args = { masked(2, S_IFMT, S_IFIFO) } },
  { names = { "mknodat" }, args = { masked(2, S_IFMT, S_IFSOCK) } },
}

-- Allowed when the container holds the capability that governs them.
M.BY_CAPABILITY = {
  CAP_SYS_CHROOT = { "chroot" },
}

-- The seccomp architectures of a machine (uname -m): the native one and
-- the compatibility modes its kernel can run.
M.ARCHITECTURES = {
  x86_64 = { "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32" },
  aarch64 = { "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM" },
}

local function sorted(list)
  local out = A {}
  for i, v in ipairs(list) do out[i] = v end
  table.sort(out)
  return out
end

local function copy_args(args)
  local out = A {}
  for i, a in ipairs(args) do
    out[i] = { index = a.index, value = a.value, valueTwo = a.valueTwo or 0, op = a.op }
  end
  return out
end

-- allowed(caps) -> sorted list of every call allowed without conditions.
function M.allowed(caps)
  local names = {}
  for _, g in ipairs(M.GROUPS) do
    for _, n in ipairs(g.syscalls) do names[#names + 1] = n end
  end
  local cap_names = {}
  for cap in pairs(M.BY_CAPABILITY) do cap_names[#cap_names + 1] = cap end
  table.sort(cap_names)
  local have = {}
  for _, c in ipairs(caps or {}) do have[c] = true end
  for _, cap in ipairs(cap_names) do
    if have[cap] then
      for _, n in ipairs(M.BY_CAPABILITY[cap]) do names[#names + 1] = n end
    end
  end
  return sorted(names)
end

-- profile(machine, caps) -> the OCI `linux.seccomp` object for a container
-- with capabilities caps on a machine (uname -m; unknown means x86_64).
function M.profile(machine, caps)
  local syscalls = A { { names = M.allowed(caps), action = "SCMP_ACT_ALLOW" } }
  for _, rule in ipairs(M.CONDITIONAL) do
    local r = { names = sorted(rule.names), action = rule.action or "SCMP_ACT_ALLOW" }
    if rule.errnoRet then r.errnoRet = rule.errnoRet end
    if rule.args then r.args = copy_args(rule.args) end
    syscalls[#syscalls + 1] = r
  end
  return {
    defaultAction = "SCMP_ACT_ERRNO",
    defaultErrnoRet = EPERM,
    architectures = A { table.unpack(M.ARCHITECTURES[machine] or M.ARCHITECTURES.x86_64) },
    syscalls = syscalls,
  }
end

return M
