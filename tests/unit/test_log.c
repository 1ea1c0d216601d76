/* The buffered log writer (sb/log.h): info lines wait in the buffer (no
 * write on the logging thread) until the writer's flush or sb_log_flush;
 * warn lines go out at once after them; a full buffer drops and counts;
 * exit writes what is left. fd 2 is redirected to a file per test (each
 * test runs in a process of its own). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sb/log.h"

static char path[64];

/* fd 2 -> a fresh file; the writer started with these settings. */
static void start(const char *flush_ms, const char *bytes)
{
    snprintf(path, sizeof path, "/tmp/sb-test-log-%d", (int)getpid());
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    cr_assert(fd >= 0);
    dup2(fd, 2);
    close(fd);
    setenv("LOG_FLUSH_MS", flush_ms, 1);
    setenv("LOG_BUFFER_BYTES", bytes, 1);
    setenv("LOG_LEVEL", "info", 1);
    sb_log_init("test");
}

/* Lines of the file containing needle. */
static int count(const char *needle)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

Test(log, info_lines_wait_for_the_flush_and_warn_lines_do_not)
{
    start("10000", "65536"); /* the writer would wait 10 s */
    for (int i = 0; i < 100; i++)
        sb_info("access %d", i);
    cr_assert_eq(count("\"msg\":\"access"), 0, "an info line was written on the logging thread");
    sb_warn("something odd");
    /* the warning and everything before it, in order */
    cr_assert_eq(count("\"msg\":\"access"), 100);
    cr_assert_eq(count("something odd"), 1);
    sb_info("after");
    cr_assert_eq(count("\"after\""), 0);
    sb_log_flush();
    cr_assert_eq(count("\"msg\":\"after\""), 1);
    unlink(path);
}

Test(log, the_writer_flushes_by_itself)
{
    start("20", "65536");
    sb_info("soon");
    for (int i = 0; i < 200 && count("\"msg\":\"soon\"") == 0; i++)
        usleep(10000);
    cr_assert_eq(count("\"msg\":\"soon\""), 1);
    unlink(path);
}

Test(log, a_full_buffer_drops_and_counts_never_blocks)
{
    /* fd 2 a pipe nobody reads yet: the writer blocks on it, the buffer fills */
    int p[2];
    cr_assert_eq(pipe(p), 0);
    dup2(p[1], 2);
    close(p[1]);
    setenv("LOG_FLUSH_MS", "20", 1);
    setenv("LOG_BUFFER_BYTES", "65536", 1);
    sb_log_init("test");
    char big[1024];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 400; i++) /* ~430 KiB; the pipe, the batch in flight and the buffer hold ~200 */
        sb_info("%s", big);
    unsigned long dropped = sb_log_dropped();
    cr_assert_gt(dropped, 0, "nothing dropped: the logging thread must have waited");
    /* now read: every line is either written or counted as dropped */
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    static char got[1 << 20];
    size_t n = 0;
    int lines = 0;
    for (int t = 0; t < 500 && lines + (int)dropped < 400; t++) {
        ssize_t k = read(p[0], got + n, sizeof got - n);
        if (k > 0) {
            for (ssize_t i = 0; i < k; i++)
                lines += got[n + (size_t)i] == '\n';
            n += (size_t)k;
        } else {
            usleep(10000);
        }
    }
    cr_assert_eq(lines + (int)dropped, 400, "written %d + dropped %lu", lines, dropped);
    close(p[0]);
}

Test(log, exit_writes_what_is_buffered)
{
    snprintf(path, sizeof path, "/tmp/sb-test-log-exit-%d", (int)getpid());
    /* a process of its own, forked before any thread: it starts the
     * writer, logs a line the writer would keep for 10 s, and exits */
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
        dup2(fd, 2);
        close(fd);
        setenv("LOG_FLUSH_MS", "10000", 1);
        sb_log_init("test");
        sb_info("last words");
        exit(0);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cr_assert_eq(count("\"msg\":\"last words\""), 1);
    unlink(path);
}
