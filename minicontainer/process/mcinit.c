/* minicontainer-init: the PID 1 of `minicontainer run --init` (ContainerSpec(init=True)).
 *
 * A PID namespace's init is special to the kernel in three ways, and an ordinary command made
 * PID 1 (sleep, httpd -f, sh) is ready for none of them:
 *   - a signal from inside the namespace, or one from outside other than SIGKILL and SIGSTOP,
 *     reaches it only if it has a handler for it (or has blocked it to wait for it): the default
 *     action "terminate" does not apply to it, so SIGTERM and SIGINT do nothing;
 *   - every process of the namespace whose parent dies becomes its child: if it never waits for
 *     them, they stay zombies;
 *   - when it exits, the kernel SIGKILLs every other process of the namespace.
 * So this program runs the command as its child (PID 2), passes the signals a user sends on to
 * it, waits for every child that ends, and exits as the command did (128 + N if signal N ended
 * it, as a shell reports it), which ends the rest of the container.
 *
 * Signals go to the command only, not to its process group: what tini does by default, and so
 * `docker run --init`. The command gets a process group of its own and, on a terminal, is made its
 * foreground group, so that Ctrl-C typed there reaches it (and its children) straight from the
 * kernel.
 *
 * Usage: minicontainer-init [--] COMMAND [ARG...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The signals a user or a runtime sends to ask a program something; all others keep their
 * defaults (SIGSEGV and the like are about this process itself, SIGTSTP/SIGTTIN/SIGTTOU about
 * job control on a terminal). */
static const int FORWARDED[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

int main(int argc, char **argv)
{
    char **command = argv + 1;
    if (command[0] && strcmp(command[0], "--") == 0)
        command++;
    if (!command[0]) {
        fprintf(stderr, "usage: minicontainer-init [--] COMMAND [ARG...]\n");
        return 2;
    }

    /* Blocked, not handled: they wait in the queue until sigwaitinfo below takes them, also when
     * they arrive before the fork. A blocked signal is queued even for a namespace's init.
     * (The runtime execs us with them blocked already.) */
    sigset_t waited, before;
    sigemptyset(&waited);
    sigaddset(&waited, SIGCHLD);
    for (size_t i = 0; i < sizeof FORWARDED / sizeof FORWARDED[0]; i++)
        sigaddset(&waited, FORWARDED[i]);
    sigprocmask(SIG_BLOCK, &waited, &before);

    pid_t child = fork();
    if (child < 0) {
        perror("minicontainer-init: fork");
        return 126;
    }
    if (child == 0) {
        setpgid(0, 0);
        /* Becoming the terminal's foreground group from the background would stop us with SIGTTOU. */
        signal(SIGTTOU, SIG_IGN);
        tcsetpgrp(STDIN_FILENO, getpgrp());  /* fails with ENOTTY without a terminal: nothing to do */
        signal(SIGTTOU, SIG_DFL);
        /* The command starts with these unblocked, also those the runtime blocked before our execve
         * (the step "init program") so that none arriving before our sigprocmask is lost. */
        sigprocmask(SIG_SETMASK, &before, NULL);
        sigprocmask(SIG_UNBLOCK, &waited, NULL);
        execvp(command[0], command);
        fprintf(stderr, "minicontainer-init: cannot run %s: %s\n", command[0], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);  /* as a shell: not found, or found but not runnable */
    }

    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&waited, &info);
        if (sig < 0)
            continue;  /* EINTR: a stop and continue */
        if (sig != SIGCHLD) {
            /* The command is not PID 1: its own handlers or default actions apply. */
            kill(child, sig);
            continue;
        }
        /* One SIGCHLD may stand for several ended children: the command, or orphans the kernel
         * made ours. Waiting for each is what removes its zombie. */
        int status;
        pid_t ended;
        while ((ended = waitpid(-1, &status, WNOHANG)) > 0) {
            if (ended == child)
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
    }
}
