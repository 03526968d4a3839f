/*
 * rss_run CMD [ARGS...]: runs CMD and prints its peak resident set size to stderr as
 * `rss_run maxrss_kib N`; exits with CMD's status.
 *
 * Why a launcher: Linux carries a process's RSS high-water mark across fork+exec, so a child
 * started directly by a large process (the Python driver, with TensorFlow loaded) reports the
 * parent's size. This small program is exec'd first; the child it forks inherits only its
 * own tiny footprint, and wait4() gives that child's true ru_maxrss.
 */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: rss_run CMD [ARGS...]\n");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        perror(argv[1]);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("wait4");
        return 2;
    }
    fprintf(stderr, "rss_run maxrss_kib %ld\n", ru.ru_maxrss);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
