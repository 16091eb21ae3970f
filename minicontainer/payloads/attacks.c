/* Attacks a process inside a container may try, one per subcommand. Each prints one line:
 *   ESCAPED: <evidence>      the attack worked (nothing on the host was changed: writes are only
 *                             opened, or write back the value already there)
 *   CONTAINED: <why>         the kernel refused it
 *   INFO: <data>             for the caller to judge (namespace identities)
 * Used by the escape test suite and notebook 05; built with gcc -static by minicontainer.payloads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

static int escaped(const char *what) { printf("ESCAPED: %s\n", what); return 1; }
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

/* /dev/kmsg (char 1:11) is the host's kernel log: not in the container's /dev, but a node can be made. */
static int mknod_and_read(unsigned major, unsigned minor)
{
    unlink("/host-device");
    if (mknod("/host-device", S_IFCHR | 0600, makedev(major, minor)) != 0) return contained("mknod");
    int fd = open("/host-device", O_RDONLY | O_NONBLOCK);
    printf("ESCAPED: made a node for a host device; opening it: %s\n", fd >= 0 ? "worked" : strerror(errno));
    if (fd >= 0) close(fd);
    unlink("/host-device");
    return 1;
}

static int mount_tmpfs(void)
{
    mkdir("/mnt", 0755);
    if (mount("attack", "/mnt", "tmpfs", 0, NULL) != 0) return contained("mount");
    umount("/mnt");
    return escaped("mounted a filesystem");
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
    return escaped("allocated all of it");
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
    return escaped("wrote all of it");
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
    if (geteuid() == 0) return escaped("a setuid-root program ran with euid 0");
    printf("CONTAINED: euid stays %d\n", geteuid());
    return 0;
}

static int seccomp_keyctl(void)
{
    /* KEYCTL_JOIN_SESSION_KEYRING with no name: a new anonymous session keyring, freed at exit. */
    if (syscall(SYS_keyctl, 1, 0) < 0) return contained("keyctl");
    return escaped("made a kernel keyring call (keyrings are not namespaced)");
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *a = argc > 1 ? argv[1] : "";
    const char *arg = argc > 2 ? argv[2] : "";
    if (!strcmp(a, "chroot-escape")) return chroot_escape(arg);
    if (!strcmp(a, "write-sysctl")) return open_for_write("/proc/sys/kernel/core_pattern");
    if (!strcmp(a, "read-proc")) return read_file(arg);
    if (!strcmp(a, "mknod-disk")) return mknod_and_read(atoi(arg), atoi(argv[3]));
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
    if (!strcmp(a, "keyctl")) return seccomp_keyctl();
    fprintf(stderr, "usage: attacks NAME [ARGS]\n");
    return 2;
}
