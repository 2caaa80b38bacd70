/* Benchmark of the chunk store (protect/chunkstore.c) against the floor of
 * a raw file write, on real bytes: the programs and libraries of this
 * machine (/usr/bin, /usr/lib), read into memory first, as a stand-in for a
 * guest's system disk. Measures, for SIZE MiB (default 256):
 *   - raw write of the image to one file + fsync (the floor);
 *   - zstd level 1, 3 and 6 alone: MB/s and ratio (why level 1);
 *   - 4 MiB files written temp + rename, with and without an fsync each (why
 *     chunks are not fsync'd one by one, and one syncfs at commit instead);
 *   - chunkstore_put of every chunk + point_commit (first time: writes), then
 *     again (every chunk a dedup hit), then point_read_disk to a file;
 * and writes <out>/protect.md. Usage: bench_protect [--out DIR] [--dir DIR]
 * [--size MIB] */
#define PROTECT_PRIV_ALLOW 1
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "protect/chunkstore.h"

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Fills buf with the bytes of regular files under dir (recursively). */
static size_t gather(const char *dir, uint8_t *buf, size_t have, size_t want) {
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && have < want && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
                struct stat st;
                if (lstat(path, &st) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        have = gather(path, buf, have, want);
                        continue;
                }
                if (!S_ISREG(st.st_mode))
                        continue;
                int fd = open(path, O_RDONLY);
                if (fd < 0)
                        continue;
                ssize_t n;
                while (have < want && (n = read(fd, buf + have, want - have)) > 0)
                        have += (size_t) n;
                close(fd);
        }
        if (d)
                closedir(d);
        return have;
}

static void rm_rf(const char *path) {
        pid_t pid = fork();
        if (pid == 0) {
                execlp("rm", "rm", "-rf", "--", path, (char *) NULL);
                _exit(127);
        }
        int status;
        waitpid(pid, &status, 0);
}

static double files_write(const char *dir, const uint8_t *img, size_t size, bool each) {
        double t0 = now_s();
        for (size_t off = 0, i = 0; off < size; off += CHUNK_SIZE, i++) {
                char tmp[512], name[512];
                snprintf(tmp, sizeof tmp, "%s/.tmp.%zu", dir, i);
                snprintf(name, sizeof name, "%s/c%zu", dir, i);
                int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                size_t n = size - off < CHUNK_SIZE ? size - off : CHUNK_SIZE;
                if (fd < 0 || write(fd, img + off, n) != (ssize_t) n)
                        exit(1);
                if (each)
                        fsync(fd);
                close(fd);
                rename(tmp, name);
        }
        if (!each)
                sync();
        return now_s() - t0;
}

int main(int argc, char **argv) {
        const char *out = NULL, *base = "/var/tmp";
        size_t mib = 256;
        for (int i = 1; i + 1 < argc; i += 2) {
                if (!strcmp(argv[i], "--out"))
                        out = argv[i + 1];
                else if (!strcmp(argv[i], "--dir"))
                        base = argv[i + 1];
                else if (!strcmp(argv[i], "--size"))
                        mib = (size_t) atol(argv[i + 1]);
        }
        size_t size = mib << 20;
        uint8_t *img = malloc(size);
        size_t got = gather("/usr/lib", img, 0, size);
        got = gather("/usr/bin", img, got, size);
        if (got < size)
                memset(img + got, 0, size - got);
        char dir[512];
        snprintf(dir, sizeof dir, "%s/armada-bench-protect-XXXXXX", base);
        if (!mkdtemp(dir))
                return 1;
        char raw[600], files[600], ds[600], back[600];
        snprintf(raw, sizeof raw, "%s/raw.img", dir);
        snprintf(files, sizeof files, "%s/files", dir);
        snprintf(ds, sizeof ds, "%s/ds", dir);
        snprintf(back, sizeof back, "%s/back.img", dir);
        mkdir(files, 0755);
        double mb = (double) size / 1e6;

        /* The floor. */
        sync();
        double t0 = now_s();
        int fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        for (size_t off = 0; off < size; off += CHUNK_SIZE)
                if (write(fd, img + off, CHUNK_SIZE) != CHUNK_SIZE)
                        return 1;
        fsync(fd);
        close(fd);
        double t_raw = now_s() - t0;

        /* Compression levels alone. */
        int levels[3] = {1, 3, 6};
        double z_rate[3], z_ratio[3];
        size_t bound = ZSTD_compressBound(CHUNK_SIZE);
        uint8_t *zbuf = malloc(bound);
        for (int l = 0; l < 3; l++) {
                size_t total = 0;
                t0 = now_s();
                for (size_t off = 0; off < size; off += CHUNK_SIZE) {
                        size_t n = ZSTD_compress(zbuf, bound, img + off, CHUNK_SIZE, levels[l]);
                        total += ZSTD_isError(n) || n > CHUNK_SIZE ? CHUNK_SIZE : n;
                }
                z_rate[l] = mb / (now_s() - t0);
                z_ratio[l] = (double) size / (double) total;
        }

        /* fsync per 4 MiB file or not. */
        double t_nosync = files_write(files, img, size, false);
        rm_rf(files);
        mkdir(files, 0755);
        double t_sync = files_write(files, img, size, true);

        /* The chunk store. */
        ChunkStore *s = NULL;
        if (chunkstore_open(ds, true, &s) < 0)
                return 1;
        double t_put[2];
        uint64_t written = 0;
        for (int pass = 0; pass < 2; pass++) {
                char id[32];
                snprintf(id, sizeof id, "2026010%dT000000Z", pass + 1);
                t0 = now_s();
                Point *p = NULL;
                unsigned k;
                point_new(s, "bench", id, NULL, &p);
                point_add_disk(p, "vda", size, &k);
                for (size_t off = 0, c = 0; off < size; off += CHUNK_SIZE, c++) {
                        if (chunk_is_zero(img + off, CHUNK_SIZE)) {
                                point_set_chunk(p, k, c, NULL);
                                continue;
                        }
                        ChunkDigest d;
                        uint64_t w = 0;
                        if (chunkstore_put(s, img + off, CHUNK_SIZE, &d, &w) < 0)
                                return 1;
                        if (pass == 0)
                                written += w;
                        point_set_chunk(p, k, c, &d);
                }
                if (point_commit(p) < 0)
                        return 1;
                point_free(p);
                t_put[pass] = now_s() - t0;
        }
        Point *p = NULL;
        point_open(s, "bench", "20260101T000000Z", &p);
        t0 = now_s();
        fd = open(back, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (point_read_disk(s, p, 0, fd, NULL, NULL) < 0)
                return 1;
        fsync(fd);
        close(fd);
        double t_get = now_s() - t0;
        point_free(p);
        chunkstore_free(s);
        rm_rf(dir);

        struct utsname u;
        uname(&u);
        double load[3] = {0};
        getloadavg(load, 3);
        char text[4096];
        snprintf(text, sizeof text,
                 "# Chunk store (bench/bench_protect)\n\n"
                 "`build/bench/bench_protect --size %zu` on %s %s, %ld CPUs, load average %.2f %.2f %.2f, ext4.\n"
                 "Data: %zu MiB of this machine's /usr/lib and /usr/bin (a stand-in for a guest's system disk).\n\n"
                 "| what | time | MB/s |\n|---|---:|---:|\n"
                 "| raw write of the image + fsync (the floor) | %.2f s | %.0f |\n"
                 "| 4 MiB files, temp + rename, one sync at the end | %.2f s | %.0f |\n"
                 "| 4 MiB files, temp + rename, fsync each | %.2f s | %.0f |\n"
                 "| chunkstore_put every chunk + commit (first backup) | %.2f s | %.0f |\n"
                 "| the same again (every chunk a dedup hit) | %.2f s | %.0f |\n"
                 "| point_read_disk to a file + fsync (restore) | %.2f s | %.0f |\n\n"
                 "Stored %.1f MiB for %zu MiB (ratio %.2f).\n\n"
                 "| zstd level | MB/s | ratio |\n|---:|---:|---:|\n"
                 "| 1 | %.0f | %.2f |\n| 3 | %.0f | %.2f |\n| 6 | %.0f | %.2f |\n",
                 mib, u.sysname, u.release, sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2], mib, t_raw,
                 mb / t_raw, t_nosync, mb / t_nosync, t_sync, mb / t_sync, t_put[0], mb / t_put[0], t_put[1],
                 mb / t_put[1], t_get, mb / t_get, (double) written / (1 << 20), mib, (double) size / (double) written,
                 z_rate[0], z_ratio[0], z_rate[1], z_ratio[1], z_rate[2], z_ratio[2]);
        fputs(text, stdout);
        if (out) {
                char path[600];
                snprintf(path, sizeof path, "%s/protect.md", out);
                FILE *f = fopen(path, "w");
                if (f) {
                        fputs(text, f);
                        fclose(f);
                }
        }
        free(img);
        free(zbuf);
        return 0;
}
