!! Ensembles of networks with spread: `type(fkb_ensemble)`.
!!
!! Members come from a list of files, a folder (its *.fkb files) or a manifest; they may differ
!! in architecture and precision but share input and output widths. `predict` gives the
!! weighted mean, and on request the standard deviation, minimum, maximum and every member's
!! output, for a whole batch in one call. Optional input noise: `copies` noisy copies of the
!! batch per member, Gaussian with a scalar or per-feature standard deviation, drawn from a
!! counter-based generator keyed by (seed, member, copy, sample, feature), so the bits do not
!! depend on the number of threads. Members run in parallel (OpenMP), and every statistic is
!! reduced in a fixed order afterwards.
!!
!! Statistics over the P = members x copies predictions y_p with weights w_p = w_member/copies
!! (weights normalised to sum 1): mean = sum w_p y_p, std = sqrt(sum w_p (y_p - mean)^2).
!!
!! Monte-Carlo dropout (`set_mc_dropout`) runs each member's Dropout layers at inference,
!! `copies` times with masks drawn from the seed: a second estimate of the spread. Noise and
!! MC dropout share `copies` and `seed`. Loading members switches both off.
!!
!! Concurrency: `predict` may run concurrently on one ensemble; loading and `set_noise` need
!! exclusive access.
module fkb_ensemble_m
  use iso_fortran_env, only: real64, int64
  use iso_c_binding, only: c_char, c_long, c_null_char
  use fkb_errors, only: FKB_ERR_UNSUPPORTED, FKB_OK, FKB_ERR_ARGUMENT, FKB_ERR_IO, FKB_ERR_SHAPE, FKB_ERR_FORMAT, &
                        set_error, report
  use fkb_config, only: int_text
  use fkb_network_m, only: fkb_network
  use fkb_random, only: mix64, gaussian
  use fkb_text, only: string_t, split_fields, read_line
  implicit none
  private
  public :: fkb_ensemble

  type :: fkb_ensemble
    private
    type(fkb_network), allocatable :: members(:)
    type(string_t), allocatable :: paths(:)
    real(real64), allocatable :: weights(:)      !! normalised to sum 1
    real(real64), allocatable :: noise_std(:)    !! empty (no noise), 1 value, or n_inputs
    integer :: copies = 1
    integer(int64) :: seed = 0
    integer(int64) :: n_in = 0, n_out = 0
    logical :: mc_dropout = .false.
  contains
    procedure :: load => ens_load
    procedure :: load_directory => ens_load_directory
    procedure :: load_manifest => ens_load_manifest
    procedure :: set_noise => ens_set_noise
    procedure :: set_mc_dropout => ens_set_mc_dropout
    procedure :: n_members => ens_n_members
    procedure :: n_inputs => ens_n_inputs
    procedure :: n_outputs => ens_n_outputs
    procedure :: member_path => ens_member_path
    procedure :: predict => ens_predict
  end type fkb_ensemble

  interface
    integer(c_long) function c_list_dir(dir, suffix, buf, capacity, needed) &
        bind(c, name='fkb_list_dir')
      import :: c_char, c_long
      character(kind=c_char), intent(in) :: dir(*), suffix(*)
      character(kind=c_char), intent(inout) :: buf(*)
      integer(c_long), value :: capacity
      integer(c_long), intent(out) :: needed
    end function c_list_dir
  end interface

contains

  subroutine ens_load(self, paths, stat, errmsg, weights)
    !! Loads the members from files; weights (default: equal) must be >= 0 with a positive sum.
    !! On failure the ensemble is unchanged and the message names the member.
    class(fkb_ensemble), intent(inout) :: self
    character(len=*), intent(in) :: paths(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), intent(in), optional :: weights(:)
    type(string_t), allocatable :: list(:)
    integer :: i
    allocate(list(size(paths)))
    do i = 1, size(paths)
      list(i)%s = trim(paths(i))
    end do
    call load_list(self, list, weights, stat, errmsg)
  end subroutine ens_load

  subroutine load_list(self, list, weights, stat, errmsg)
    class(fkb_ensemble), intent(inout) :: self
    type(string_t), intent(in) :: list(:)
    real(real64), intent(in), optional :: weights(:)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    type(fkb_network), allocatable :: members(:)
    real(real64), allocatable :: w(:)
    character(len=2048) :: text
    character(len=:), allocatable :: msg
    integer :: i, st
    msg = ''
    st = FKB_OK
    if (size(list) == 0) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'an ensemble needs at least one member')
      call report(st, msg, stat, errmsg)
      return
    end if
    if (present(weights)) then
      w = weights
    else
      w = [(1.0_real64, i=1, size(list))]
    end if
    if (size(w) /= size(list)) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, int_text(size(w, kind=int64)) // &
                     ' weights for ' // int_text(size(list, kind=int64)) // ' members')
    else if (.not. all(w >= 0) .or. .not. sum(w) > 0 .or. .not. sum(w) <= huge(1.0_real64)) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'member weights must be finite and >= 0 with &
                     &a positive sum')
    end if
    if (st /= FKB_OK) then
      call report(st, msg, stat, errmsg)
      return
    end if
    allocate(members(size(list)))
    do i = 1, size(list)
      text = ''
      call members(i)%load(list(i)%s, stat=st, errmsg=text)
      if (st /= FKB_OK) then
        msg = 'member ' // int_text(int(i, int64)) // " ('" // list(i)%s // "'): " // trim(text)
        exit
      end if
      if (members(i)%input_count() /= 1 .or. members(i)%output_count() /= 1) then
        call set_error(st, msg, FKB_ERR_UNSUPPORTED, 'member ' // int_text(int(i, int64)) // &
                       " ('" // list(i)%s // "') has several inputs or outputs; ensembles " // &
                       'take models with one input and one output')
        exit
      end if
      if (members(i)%n_inputs() /= members(1)%n_inputs() .or. &
          members(i)%n_outputs() /= members(1)%n_outputs()) then
        call set_error(st, msg, FKB_ERR_SHAPE, 'member ' // int_text(int(i, int64)) // " ('" &
                       // list(i)%s // "') maps " // int_text(members(i)%n_inputs()) // ' -> ' &
                       // int_text(members(i)%n_outputs()) // ', member 1 maps ' // &
                       int_text(members(1)%n_inputs()) // ' -> ' // &
                       int_text(members(1)%n_outputs()))
        exit
      end if
    end do
    if (st == FKB_OK) then
      call move_alloc(members, self%members)
      self%paths = list
      self%weights = w / sum(w)
      self%n_in = self%members(1)%n_inputs()
      self%n_out = self%members(1)%n_outputs()
      ! A new set of members starts without noise.
      if (allocated(self%noise_std)) deallocate(self%noise_std)
      self%copies = 1
      self%mc_dropout = .false.
    end if
    call report(st, msg, stat, errmsg)
  end subroutine load_list

  subroutine ens_load_directory(self, dir, stat, errmsg)
    !! Loads every *.fkb file of a folder, in name order, with equal weights.
    class(fkb_ensemble), intent(inout) :: self
    character(len=*), intent(in) :: dir
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    character(kind=c_char), allocatable :: buf(:)
    type(string_t), allocatable :: list(:)
    character(len=:), allocatable :: names, msg
    integer(c_long) :: n, needed
    integer :: i, st
    msg = ''
    allocate(buf(1))
    n = c_list_dir(dir // c_null_char, '.fkb' // c_null_char, buf, 0_c_long, needed)
    if (n == -2) then
      deallocate(buf)
      allocate(buf(needed))
      n = c_list_dir(dir // c_null_char, '.fkb' // c_null_char, buf, needed, needed)
    end if
    if (n < 0) then
      call set_error(st, msg, FKB_ERR_IO, "cannot read the folder '" // dir // "'")
      call report(st, msg, stat, errmsg)
      return
    end if
    if (n == 0) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, "no .fkb files in '" // dir // "'")
      call report(st, msg, stat, errmsg)
      return
    end if
    allocate(character(len=needed) :: names)
    do i = 1, int(needed)
      names(i:i) = buf(i)
    end do
    list = split_fields(names, c_null_char)
    do i = 1, size(list)
      list(i)%s = dir // '/' // list(i)%s
    end do
    call load_list(self, list, stat=stat, errmsg=errmsg)
  end subroutine ens_load_directory

  subroutine ens_load_manifest(self, path, stat, errmsg)
    !! Loads the members listed in a manifest: one `PATH [WEIGHT]` per line, paths relative
    !! to the manifest's folder, `#` starts a comment.
    class(fkb_ensemble), intent(inout) :: self
    character(len=*), intent(in) :: path
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    type(string_t), allocatable :: list(:), f(:)
    real(real64), allocatable :: w(:)
    character(len=:), allocatable :: line, base, msg
    character(len=256) :: iomsg
    integer :: u, ios, st, lineno, hash, slash
    real(real64) :: weight
    msg = ''
    st = FKB_OK
    open (newunit=u, file=path, status='old', action='read', iostat=ios, iomsg=iomsg)
    if (ios /= 0) then
      call set_error(st, msg, FKB_ERR_IO, "cannot open manifest '" // path // "': " // &
                     trim(iomsg))
      call report(st, msg, stat, errmsg)
      return
    end if
    slash = index(path, '/', back=.true.)
    base = path(1:slash)
    allocate(list(0), w(0))
    lineno = 0
    do
      call read_line(u, line, ios)
      if (ios /= 0) exit
      lineno = lineno + 1
      hash = index(line, '#')
      if (hash > 0) line = line(1:hash - 1)
      f = split_fields(line, ' ' // achar(9) // achar(13))
      if (size(f) == 0) cycle
      weight = 1
      if (size(f) > 2) ios = 1
      if (size(f) == 2) read (f(2)%s, *, iostat=ios) weight
      if (ios /= 0) then
        call set_error(st, msg, FKB_ERR_FORMAT, "manifest '" // path // "' line " // &
                       int_text(int(lineno, int64)) // ": expected 'PATH [WEIGHT]'")
        exit
      end if
      if (f(1)%s(1:1) /= '/') f(1)%s = base // f(1)%s
      list = [list, f(1)]
      w = [w, weight]
    end do
    close (u)
    if (st /= FKB_OK) then
      call report(st, msg, stat, errmsg)
      return
    end if
    call load_list(self, list, w, stat, errmsg)
  end subroutine ens_load_manifest

  subroutine ens_set_noise(self, std, copies, seed, stat, errmsg)
    !! Input perturbation: `copies` noisy copies per member with standard deviation `std`
    !! (one value, or one per input feature); std = 0 and copies = 1 switch it off.
    class(fkb_ensemble), intent(inout) :: self
    real(real64), intent(in) :: std(:)
    integer, intent(in) :: copies
    integer(int64), intent(in) :: seed
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    character(len=:), allocatable :: msg
    integer :: st
    msg = ''
    st = FKB_OK
    if (copies < 1) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'copies must be at least 1, got ' // &
                     int_text(int(copies, int64)))
    else if (.not. all(std >= 0 .and. std <= huge(1.0_real64))) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'noise standard deviation must be finite and &
                     &>= 0')
    else if (size(std) > 1 .and. size(std, kind=int64) /= self%n_in) then
      call set_error(st, msg, FKB_ERR_SHAPE, int_text(size(std, kind=int64)) // &
                     ' noise values for ' // int_text(self%n_in) // ' inputs')
    else if (size(std) < 1) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'give one noise value or one per input')
    else
      self%noise_std = std
      self%copies = copies
      self%seed = seed
    end if
    call report(st, msg, stat, errmsg)
  end subroutine ens_set_noise

  subroutine ens_set_mc_dropout(self, on, copies, seed, stat, errmsg)
    !! Monte-Carlo dropout: `copies` stochastic passes per member with Dropout active.
    class(fkb_ensemble), intent(inout) :: self
    logical, intent(in) :: on
    integer, intent(in) :: copies
    integer(int64), intent(in) :: seed
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    character(len=:), allocatable :: msg
    integer :: st
    msg = ''
    st = FKB_OK
    if (copies < 1) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'copies must be at least 1, got ' // &
                     int_text(int(copies, int64)))
    else
      self%mc_dropout = on
      self%copies = copies
      self%seed = seed
    end if
    call report(st, msg, stat, errmsg)
  end subroutine ens_set_mc_dropout

  pure integer function ens_n_members(self)
    class(fkb_ensemble), intent(in) :: self
    ens_n_members = 0
    if (allocated(self%members)) ens_n_members = size(self%members)
  end function ens_n_members

  pure integer(int64) function ens_n_inputs(self)
    class(fkb_ensemble), intent(in) :: self
    ens_n_inputs = self%n_in
  end function ens_n_inputs

  pure integer(int64) function ens_n_outputs(self)
    class(fkb_ensemble), intent(in) :: self
    ens_n_outputs = self%n_out
  end function ens_n_outputs

  function ens_member_path(self, i) result(path)
    class(fkb_ensemble), intent(in) :: self
    integer, intent(in) :: i
    character(len=:), allocatable :: path
    path = ''
    if (allocated(self%paths)) then
      if (i >= 1 .and. i <= size(self%paths)) path = self%paths(i)%s
    end if
  end function ens_member_path

  subroutine ens_predict(self, x, mean, stat, errmsg, std, minimum, maximum, members)
    !! x(n_inputs, batch) -> mean(n_outputs, batch); optional std, minimum, maximum of the
    !! same shape, and members(n_outputs, batch, n_members) (each member's mean over copies).
    class(fkb_ensemble), intent(inout) :: self
    real(real64), intent(in) :: x(:, :)
    real(real64), intent(inout) :: mean(:, :)
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    real(real64), intent(inout), optional :: std(:, :), minimum(:, :), maximum(:, :)
    real(real64), intent(inout), optional :: members(:, :, :)
    real(real64), allocatable :: all(:, :, :)
    integer, allocatable :: status(:)
    character(len=:), allocatable :: msg
    integer :: st, p, np, k, m
    integer(int64) :: n
    real(real64) :: wp
    msg = ''
    st = FKB_OK
    n = size(x, 2, int64)
    if (.not. allocated(self%members)) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'the ensemble is not loaded')
    else if (n < 1) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, 'batch size must be at least 1')
    else if (size(x, 1, int64) /= self%n_in) then
      call set_error(st, msg, FKB_ERR_SHAPE, 'input has ' // int_text(size(x, 1, int64)) // &
                     ' features per sample, the ensemble takes ' // int_text(self%n_in))
    else if (.not. shape_ok(mean)) then
      call set_error(st, msg, FKB_ERR_SHAPE, 'mean must be n_outputs x batch')
    end if
    if (st == FKB_OK .and. present(std)) then
      if (.not. shape_ok(std)) call set_error(st, msg, FKB_ERR_SHAPE, 'std must be n_outputs x batch')
    end if
    if (st == FKB_OK .and. present(minimum)) then
      if (.not. shape_ok(minimum)) call set_error(st, msg, FKB_ERR_SHAPE, 'minimum must be n_outputs x batch')
    end if
    if (st == FKB_OK .and. present(maximum)) then
      if (.not. shape_ok(maximum)) call set_error(st, msg, FKB_ERR_SHAPE, 'maximum must be n_outputs x batch')
    end if
    if (st == FKB_OK .and. present(members)) then
      if (size(members, 1, int64) /= self%n_out .or. size(members, 2, int64) /= n .or. &
          size(members, 3) /= size(self%members)) call set_error(st, msg, FKB_ERR_SHAPE, &
          'members must be n_outputs x batch x n_members')
    end if
    if (st /= FKB_OK) then
      call report(st, msg, stat, errmsg)
      return
    end if
    ! Every (member, copy) prediction, in parallel; then fixed-order reductions.
    np = size(self%members) * self%copies
    allocate(all(self%n_out, n, np), status(np))
    !$omp parallel do schedule(dynamic) if(np > 1)
    do p = 1, np
      call run_one(self, p, x, all(:, :, p), status(p))
    end do
    !$omp end parallel do
    if (any(status /= FKB_OK)) then
      call set_error(st, msg, status(findloc(status /= FKB_OK, .true., 1)), &
                     'a member failed to predict')
      call report(st, msg, stat, errmsg)
      return
    end if
    mean = 0
    do p = 1, np
      wp = self%weights(member_of(p)) / self%copies
      mean = mean + wp * all(:, :, p)
    end do
    if (present(std)) then
      std = 0
      do p = 1, np
        wp = self%weights(member_of(p)) / self%copies
        std = std + wp * (all(:, :, p) - mean)**2
      end do
      std = sqrt(std)
    end if
    if (present(minimum)) minimum = minval(all, dim=3)
    if (present(maximum)) maximum = maxval(all, dim=3)
    if (present(members)) then
      do m = 1, size(self%members)
        members(:, :, m) = 0
        do k = 1, self%copies
          members(:, :, m) = members(:, :, m) + all(:, :, (m - 1) * self%copies + k)
        end do
        members(:, :, m) = members(:, :, m) / self%copies
      end do
    end if
    call report(st, msg, stat, errmsg)

  contains

    logical function shape_ok(a)
      real(real64), intent(in) :: a(:, :)
      shape_ok = size(a, 1, int64) == self%n_out .and. size(a, 2, int64) == n
    end function shape_ok

    integer function member_of(p)
      integer, intent(in) :: p
      member_of = (p - 1) / self%copies + 1
    end function member_of

  end subroutine ens_predict

  subroutine run_one(self, p, x, y, st)
    ! Prediction p = (member, copy), with that copy's noise added to the inputs.
    class(fkb_ensemble), intent(inout) :: self
    integer, intent(in) :: p
    real(real64), intent(in) :: x(:, :)
    real(real64), intent(inout) :: y(:, :)
    integer, intent(out) :: st
    real(real64), allocatable :: xn(:, :)
    integer(int64) :: key, col_key, i, j
    integer :: m
    logical :: noisy
    m = (p - 1) / self%copies + 1
    key = mix64(mix64(self%seed, int(m, int64)), int(mod(p - 1, self%copies), int64))
    noisy = allocated(self%noise_std)
    if (noisy) noisy = any(self%noise_std /= 0)
    if (.not. noisy) then
      call member_predict(x)
      return
    end if
    allocate(xn, mold=x)
    do j = 1, size(x, 2, int64)
      col_key = mix64(key, j)
      do i = 1, size(x, 1, int64)
        xn(i, j) = x(i, j) + self%noise_std(min(i, size(self%noise_std, kind=int64))) * &
                   gaussian(col_key, i)
      end do
    end do
    call member_predict(xn)
  contains
    subroutine member_predict(xin)
      real(real64), intent(in) :: xin(:, :)
      if (self%mc_dropout) then
        call self%members(m)%predict(xin, y, stat=st, dropout_seed=mix64(key, -1_int64))
      else
        call self%members(m)%predict(xin, y, stat=st)
      end if
    end subroutine member_predict
  end subroutine run_one

end module fkb_ensemble_m
