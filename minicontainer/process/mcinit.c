/* The init of `minicontainer run --init`: a PID 1 that does what a namespace's init must.
 *
 * A PID namespace's init gets from outside only the signals it has a handler for, every orphan of
 * the namespace becomes its child, and when it exits the kernel kills the rest of the namespace.
 * An ordinary command as PID 1 (sleep, httpd -f) ignores SIGTERM and leaves orphans as zombies.
 * This one starts the command as its child, passes every signal it gets on to it, reaps every
 * child that ends, and exits as the command did (128 + the signal if a signal ended it).
 *
 * Usage: mcinit COMMAND [ARG...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s COMMAND [ARG...]\n", argv[0]);
        return 2;
    }
    sigset_t all, before;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &before);  /* every signal waits for sigwaitinfo below */
    pid_t child = fork();
    if (child < 0) {
        perror("minicontainer init: fork");
        return 126;
    }
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &before, NULL);  /* the command gets the usual defaults back */
        execvp(argv[1], argv + 1);
        fprintf(stderr, "minicontainer init: cannot run %s: %s\n", argv[1], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&all, &info);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            kill(child, sig);  /* the command decides; its default action applies to it, not being PID 1 */
            continue;
        }
        int status;
        pid_t done;
        while ((done = waitpid(-1, &status, WNOHANG)) > 0) {  /* the command, or an orphan */
            if (done == child)
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
    }
}
